"""Token classification (NER): a tag per word, read from the word's first sub-token.

Batch: `inputs` ([CLS] word pieces [SEP], padded), `segment_ids`, `positions`, `token_types`,
and `labels` (batch, length): the word's tag id at its first sub-token, -1 elsewhere. Training
reports token accuracy; evaluation decodes BIO sequences per word and scores entity-level
precision/recall/F1 with seqeval (CoNLL rules), overall and per entity type.
"""
import jax.numpy as jnp

from llm.objectives.losses import cross_entropy_sums

HEADS = ("tag",)


def normalizers(batch):
  return {"tokens": jnp.maximum(jnp.sum(batch["labels"] >= 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  labels = batch["labels"]
  sums = dict(zip(("loss", "correct", "tokens"),
                  cross_entropy_sums(outputs["tag"], labels, labels >= 0)))
  return sums["loss"] / norms["tokens"], sums


def predict(outputs, batch):
  """(batch, length) predicted tag ids at first sub-tokens, -1 elsewhere."""
  return jnp.where(batch["labels"] >= 0, jnp.argmax(outputs["tag"], -1), -1)


def summarize(sums):
  tokens = max(float(sums["tokens"]), 1.0)
  return {"loss": float(sums["loss"]) / tokens, "token_accuracy": float(sums["correct"]) / tokens}


def word_tags(row_prediction, num_words, names):
  """Tag names for a sentence's words; words cut off by truncation are predicted 'O'."""
  tags = [names[t] for t in row_prediction if t >= 0][:num_words]
  return tags + ["O"] * (num_words - len(tags))


def records(predictions, source, names):
  """One dict per sentence: id, words, gold tags and predicted tags."""
  out = []
  for i in range(min(len(source), len(predictions))):
    example = source[i]
    words = [w.decode(errors="replace") for w in example["tokens"]]
    out.append({"id": example["id"].decode(), "tokens": words,
                "tags": [names[t] for t in example["tags"]],
                "predicted": word_tags(predictions[i], len(words), names)})
  return out


def score(predictions, source, names):
  """Entity-level precision/recall/F1 (seqeval, CoNLL rules) over the whole split."""
  from seqeval.metrics import classification_report
  rows = records(predictions, source, names)
  report = classification_report([r["tags"] for r in rows], [r["predicted"] for r in rows],
                                 output_dict=True, zero_division=0)
  out = {f"span_{k}": report["micro avg"][k] for k in ("precision", "recall", "f1-score")}
  out = {k.replace("-score", ""): v for k, v in out.items()}
  for entity, values in report.items():
    if entity not in ("micro avg", "macro avg", "weighted avg"):
      out[f"span_f1/{entity}"] = values["f1-score"]
  return out
