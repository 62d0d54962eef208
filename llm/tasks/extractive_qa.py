"""Extractive QA (SQuAD v1.1): start/end logits per piece -> the best answer span per question.

Batch: one row per context window (data/qa.py): model inputs, `start_labels`/`end_labels` (the
answer's pieces in this window, 0 = [CLS] when it holds none, -1 in padding rows), `word_index`,
`max_context` and `example_index`. Training minimises the mean of the start and end cross-entropies
over the row's real pieces. Evaluation takes, in every window, the n_best start and end pieces,
keeps pairs with start <= end, at most max_answer_len pieces long, that start at a piece in its
max-context window, and answers each question with the highest start + end logit over all its
windows, as whole words of the context. Exact match and F1 use SQuAD's official normalisation
(lowercase, drop punctuation and a/an/the, collapse spaces) and the best over the gold answers.
"""

import jax.numpy as jnp
import numpy as np

from llm import scores
from llm.data import batching, corpora, packing, qa as qa_rows
from llm.data.qa import context_words
from llm.tasks import Task
from llm.tasks.losses import cross_entropy_sums

PASSED_THROUGH = ("word_index", "max_context", "example_index")


def rows(docs, config, tok):
  """One row per context window (see data/qa.py); a long context gives several rows."""
  def windows(item):
    return qa_rows.encode_qa(tok, item[1], item[0], config.seq_len, config.qa.max_query_len,
                             config.qa.doc_stride)
  return packing.flatten(docs.map(windows).to_iter_dataset(batching.READ_OPTIONS))


def normalizers(batch):
  return {"windows": jnp.maximum(jnp.sum(batch["start_labels"] >= 0), 1).astype(jnp.float32)}


def _masked(logits, batch):
  # Padding pieces can never be an answer; [CLS] stays, it is the label of answerless windows.
  return jnp.where(batch["segment_ids"] > 0, logits.astype(jnp.float32), -1e9)


def loss_fn(outputs, batch, norms):
  sums = {}
  for end in ("start", "end"):
    labels = batch[f"{end}_labels"]
    loss, correct, windows = cross_entropy_sums(_masked(outputs[f"span_{end}"], batch), labels,
                                                labels >= 0)
    sums["loss"] = sums.get("loss", 0.0) + loss / 2
    sums[f"{end}_correct"] = correct
  sums["windows"] = windows
  return sums["loss"] / norms["windows"], sums


def predict(outputs, batch):
  """Per row: start/end logits plus what decoding needs to map pieces back to words."""
  out = {f"{end}_logits": _masked(outputs[f"span_{end}"], batch) for end in ("start", "end")}
  out.update({k: batch[k] for k in PASSED_THROUGH})
  return out


def summarize(sums):
  windows = max(float(sums["windows"]), 1.0)
  return {"loss": float(sums["loss"]) / windows,
          "start_accuracy": float(sums["start_correct"]) / windows,
          "end_accuracy": float(sums["end_correct"]) / windows}


def best_spans(predictions, n_best, max_answer_len):
  """{example index: (score, first word, last word)}: the best valid span over its windows."""
  best = {}
  for row, example in enumerate(predictions["example_index"]):
    if example < 0:
      continue
    words, start_ok = predictions["word_index"][row], predictions["max_context"][row] > 0
    start_logits = np.where(start_ok & (words >= 0), predictions["start_logits"][row], -np.inf)
    end_logits = np.where(words >= 0, predictions["end_logits"][row], -np.inf)
    starts = np.argsort(-start_logits)[:n_best]
    ends = np.argsort(-end_logits)[:n_best]
    scores = start_logits[starts][:, None] + end_logits[ends][None, :]
    length = ends[None, :] - starts[:, None] + 1
    scores = np.where((length >= 1) & (length <= max_answer_len), scores, -np.inf)
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    example = int(example)
    if np.isfinite(scores[i, j]) and (best.get(example) is None or scores[i, j] > best[example][0]):
      best[example] = (float(scores[i, j]), int(words[starts[i]]), int(words[ends[j]]))
    best.setdefault(int(example), None)   # seen, but no valid span (yet)
  return best


def answer_texts(predictions, source, qa):
  """[(example index, predicted answer text)] in split order."""
  out = []
  for example, span in sorted(best_spans(predictions, qa.n_best, qa.max_answer_len).items()):
    text = ""
    if span is not None:
      context = corpora.as_text(source[example]["context"])
      words = context_words(context)
      text = context[words[span[1]][0]:words[span[2]][1]]
    out.append((example, text))
  return out


def records(predictions, split):
  """One dict per question: id, question, predicted answer, gold answers, and its EM / F1."""
  rows, source = [], split.examples
  for example, text in answer_texts(predictions, source, split.config.qa):
    ex = source[example]
    golds = [corpora.as_text(t) for t in ex["answers"]["text"]]
    rows.append({"id": corpora.as_text(ex["id"]), "question": corpora.as_text(ex["question"]),
                 "prediction": text, "answers": golds,
                 "exact_match": max(scores.exact_match(text, g) for g in golds),
                 "f1": max(scores.answer_f1(text, g) for g in golds)})
  return rows


def score(predictions, split):
  """Exact match and F1 (fractions, SQuAD reports them x100) over the questions evaluated."""
  rows = records(predictions, split)
  count = max(len(rows), 1)
  return {"exact_match": sum(r["exact_match"] for r in rows) / count,
          "f1": sum(r["f1"] for r in rows) / count}


def check(config):
  qa = config.qa
  if qa.max_query_len + 3 + qa.doc_stride > config.seq_len:
    raise ValueError(f"seq_len={config.seq_len} must hold [CLS] question [SEP] window [SEP] "
                     f"with windows at least doc_stride long: need seq_len >= "
                     f"qa.max_query_len + qa.doc_stride + 3 = "
                     f"{qa.max_query_len + qa.doc_stride + 3}")


TASK = Task(name="extractive_qa", families=("encoder",), heads=lambda config: ("span",),
            rows=rows, normalizers=normalizers, loss_fn=loss_fn, summarize=summarize,
            predict=predict, records=records, score=score, check=check,
            export_class=lambda config: "BertForQuestionAnswering",
            pad_with_minus_one=("labels", "example_index", "word_index"),
            # SQuAD's recipe: question pieces kept, stride between context windows, the longest
            # answer decoded (pieces), candidates per window for the start and the end.
            config={"qa": dict(max_query_len=64, doc_stride=128, max_answer_len=30, n_best=20)},
            ranges={f"qa.{key}": "[1, inf)"
                    for key in ("max_query_len", "doc_stride", "max_answer_len", "n_best")},
            stream_keys=("qa",))
