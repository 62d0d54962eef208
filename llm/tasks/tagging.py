"""Token classification (NER): a tag per word, read from the word's first sub-token.

Batch: `inputs` ([CLS] word pieces [SEP], padded), `segment_ids`, `positions`, `token_types`,
and `labels` (batch, length): the word's tag id at its first sub-token, -1 elsewhere. Training
reports token accuracy; evaluation decodes BIO sequences per word and scores entity-level
precision/recall/F1 with seqeval (CoNLL rules), overall and per entity type.
"""
import jax.numpy as jnp
import numpy as np

from llm import scores
from llm.data import batching, packing, tokenizer as tokenizer_lib
from llm.tasks import Task
from llm.tasks.classification import by_example
from llm.tasks.losses import cross_entropy_sums


def encode_words(tok, words, tags, seq_len):
  """[CLS] pieces [SEP] for a pre-split sentence; each word's tag sits on its first piece (the
  others get -1, ignored). A word with no pieces becomes [UNK] so words and tags stay aligned;
  words past seq_len are cut (evaluation then predicts 'O' for them)."""
  pieces, labels = [tok.cls_id], [-1]
  for word, tag in zip(words, tags):
    ids = tok.encode(word) or [tokenizer_lib.UNK]
    if len(pieces) + len(ids) > seq_len - 1:
      break
    pieces += ids
    labels += [int(tag)] + [-1] * (len(ids) - 1)
  pieces.append(tok.sep_id)
  labels.append(-1)
  row = packing.padded_row(pieces, seq_len)
  row["labels"] = np.full(seq_len, -1, np.int32)
  row["labels"][:len(pieces)] = labels
  return row


def rows(docs, config, tok):
  """One padded row per sentence, labels on first sub-tokens."""
  def example(item):
    row = encode_words(tok, list(item[1]["tokens"]), list(item[1]["tags"]), config.seq_len)
    row["example_index"] = np.int32(item[0])   # predictions find their sentence by it
    return row
  return docs.map(example).to_iter_dataset(batching.READ_OPTIONS)


def normalizers(batch):
  return {"tokens": jnp.maximum(jnp.sum(batch["labels"] >= 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  labels = batch["labels"]
  sums = dict(zip(("loss", "correct", "tokens"),
                  cross_entropy_sums(outputs["tag"], labels, labels >= 0)))
  return sums["loss"] / norms["tokens"], sums


def predict(outputs, batch):
  """Per row: predicted tag ids at first sub-tokens (-1 elsewhere) and the sentence's index."""
  return {"tags": jnp.where(batch["labels"] >= 0, jnp.argmax(outputs["tag"], -1), -1),
          "example_index": batch["example_index"]}


def summarize(sums):
  tokens = max(float(sums["tokens"]), 1.0)
  return {"loss": float(sums["loss"]) / tokens, "token_accuracy": float(sums["correct"]) / tokens}


def word_tags(row_prediction, num_words, names):
  """Tag names for a sentence's words; words cut off by truncation are predicted 'O'."""
  tags = [names[t] for t in row_prediction if t >= 0][:num_words]
  return tags + ["O"] * (num_words - len(tags))


def records(predictions, split):
  """One dict per sentence: id, words, gold tags and predicted tags."""
  out, names = [], split.label_names
  for i, tags in by_example(predictions, "tags"):
    example = split.examples[i]
    words = [w.decode(errors="replace") for w in example["tokens"]]
    out.append({"id": example["id"].decode(), "tokens": words,
                "tags": [names[t] for t in example["tags"]],
                "predicted": word_tags(tags, len(words), names)})
  return out


def score(predictions, split):
  """Entity-level precision/recall/F1 (seqeval, CoNLL rules) over the whole split."""
  rows = records(predictions, split)
  return scores.entity_scores([r["tags"] for r in rows], [r["predicted"] for r in rows])


TASK = Task(name="tagging", families=("encoder",), heads=lambda config: ("tag",), rows=rows,
            normalizers=normalizers, loss_fn=loss_fn, summarize=summarize, predict=predict,
            records=records, score=score,
            export_class=lambda config: "BertForTokenClassification",
            pad_with_minus_one=("labels", "example_index"), labels=True)
