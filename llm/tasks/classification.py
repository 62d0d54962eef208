"""Sequence classification from the pooled [CLS] state (BERT fine-tuning).

Batch: `inputs` ([CLS] text [SEP], padded), `segment_ids`, `positions`, `token_types`, and
`labels` (batch,) with -1 for padding rows. Metrics: accuracy and macro-F1, both computed from
counts summed over the whole split (not averaged over batches).
"""
import jax
import jax.numpy as jnp
import numpy as np

from llm import scores
from llm.data import batching, packing
from llm.tasks import Task
from llm.tasks.losses import cross_entropy_sums


def rows(docs, config, tok):
  """One padded [CLS] text [SEP] row per example, with its integer label."""
  def example(item):
    row = packing.encode_single(tok, item[1]["text"], config.seq_len)
    row["labels"] = np.int32(item[1]["label"])
    row["example_index"] = np.int32(item[0])   # predictions find their example by it
    return row
  return docs.map(example).to_iter_dataset(batching.READ_OPTIONS)


def normalizers(batch):
  return {"examples": jnp.maximum(jnp.sum(batch["labels"] >= 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  logits, labels = outputs["classify"], batch["labels"]
  weights = (labels >= 0).astype(jnp.float32)
  sums = dict(zip(("loss", "correct", "examples"), cross_entropy_sums(logits, labels, weights)))
  num_classes = logits.shape[-1]
  pred_onehot = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes) * weights[:, None]
  true_onehot = jax.nn.one_hot(labels, num_classes) * weights[:, None]   # -1 -> all zeros
  sums.update(true_positives=jnp.sum(pred_onehot * true_onehot, 0),
              predicted=jnp.sum(pred_onehot, 0), actual=jnp.sum(true_onehot, 0))
  return sums["loss"] / norms["examples"], sums


def predict(outputs, batch):
  return {"label": jnp.argmax(outputs["classify"], -1), "example_index": batch["example_index"]}


def by_example(predictions, key):
  """[(example index, prediction)] in split order, padding rows (index -1) left out: rows are
  matched to examples by the index they carry, never by their position in the batches."""
  return sorted((int(i), p) for i, p in zip(predictions["example_index"], predictions[key])
                if i >= 0)


def records(predictions, split):
  """One dict per example evaluated: id, gold label and predicted label."""
  examples, names = split.examples, split.label_names
  return [{"id": examples[i]["id"].decode(), "label": names[examples[i]["label"]],
           "prediction": names[int(label)]} for i, label in by_example(predictions, "label")]


def summarize(sums):
  examples = max(float(sums["examples"]), 1.0)
  return {"loss": float(sums["loss"]) / examples, "accuracy": float(sums["correct"]) / examples,
          "macro_f1": scores.macro_f1(sums["true_positives"], sums["predicted"], sums["actual"])}


TASK = Task(name="classification", families=("encoder",), heads=lambda config: ("classify",),
            rows=rows, normalizers=normalizers, loss_fn=loss_fn, summarize=summarize,
            predict=predict, records=records,
            export_class=lambda config: "BertForSequenceClassification", labels=True,
            pad_with_minus_one=("labels", "example_index"))
