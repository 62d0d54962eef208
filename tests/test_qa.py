"""Extractive QA: SQuAD reading, windows with doc stride, n-best decoding, official EM/F1, the CLI."""
import json
import types

import numpy as np
import pytest

from llm import config_checks, scores
from llm.data import corpora, qa
from llm.data.builders import aclsum_qa
from llm.data.builders.squad import read_squad, write_squad
from llm.evaluation import evaluate_checkpoint
from llm.tasks import EvalSet, extractive_qa

from helpers import TINY, config_flags, load_config

CONTEXT = ("The quick brown fox jumped over the lazy dog near Springfield . Afterwards the fox "
           "slept under an enormous oak tree until sunset .")


class WordTokenizer:
  """A stand-in tokenizer: one id per word, two pieces for words of 6+ letters."""
  cls_id, sep_id, mask_id = 4, 5, 6

  def __init__(self):
    self.vocab = {}

  def _word(self, word):
    ids = [self.vocab.setdefault(word[:5], 10 + len(self.vocab))]
    if len(word) > 5:
      ids.append(self.vocab.setdefault("##" + word[5:], 10 + len(self.vocab)))
    return ids

  def encode(self, text):
    return [i for w in text.split() for i in self._word(w)]

  def encode_batch(self, texts):
    return [self.encode(t) for t in texts]


def example(question="Where did the fox sleep?", answer="under an enormous oak tree"):
  return {"id": "q1", "title": "t", "context": CONTEXT, "question": question,
          "answers": {"text": [answer], "answer_start": [CONTEXT.index(answer)]}}


# --- SQuAD files ---------------------------------------------------------------------------------

def test_squad_round_trip(tmp_path):
  examples = [example(), dict(example("Who jumped?", "The quick brown fox"), id="q2")]
  write_squad(examples, tmp_path / "f.json")
  got = read_squad(tmp_path / "f.json")
  assert [e["id"] for e in got] == ["q1", "q2"]
  assert got[1]["answers"] == {"text": ["The quick brown fox"], "answer_start": [0]}
  assert got[0]["context"] == CONTEXT


@pytest.mark.parametrize("text, message", [
    ('{"data": [\n  {"title": "x",, }]}', r"f.json:2:17: not valid JSON"),
    ('{"version": "1.1"}', r"top level: expected a list 'data'"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q?", '
     '"answers": [{"text": "bc", "answer_start": 0}]}]}]}]}',
     r"data\[0\].paragraphs\[0\].qas\[0\].answers\[0\]: text 'bc' is not at answer_start 0"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "answers": []}]}]}]}',
     r"data\[0\].paragraphs\[0\].qas\[0\]: expected a str 'question'"),
])
def test_malformed_squad_file_names_the_place(tmp_path, text, message):
  path = tmp_path / "f.json"
  path.write_text(text)
  with pytest.raises(ValueError, match=message):
    read_squad(path)


def test_aclsum_questions_are_highlighted_sentences():
  examples = aclsum_qa.synthesize("validation")
  assert len(examples) == 150 and len({e["id"] for e in examples}) == 150
  for ex in examples:
    assert ex["question"] in aclsum_qa.QUESTIONS.values()
    for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
      assert ex["context"][start:start + len(text)] == text
      # an answer is a whole sentence: it starts and ends at a word boundary of the context
      assert start == 0 or ex["context"][start - 1] in " \n"


# --- windows -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq_len, stride", [(24, 4), (20, 3), (64, 16)])
def test_windows_cover_the_context_and_label_the_answer(seq_len, stride):
  tok, ex = WordTokenizer(), example()
  rows = qa.encode_qa(tok, ex, 7, seq_len, max_query_len=8, doc_stride=stride)
  pieces = tok.encode(CONTEXT)
  words = qa.context_words(CONTEXT)
  seen = np.zeros(len(pieces), int)
  best = np.zeros(len(pieces), int)
  answer_words = qa.answer_word_span(words, CONTEXT.index("under"), "under an enormous oak tree")
  labelled = 0
  offset = len(tok.encode(ex["question"])) + 2
  for k, row in enumerate(rows):
    assert row["example_index"] == 7
    n = int(row["segment_ids"].sum())
    assert n <= seq_len and row["inputs"][0] == tok.cls_id and row["inputs"][n - 1] == tok.sep_id
    context = row["word_index"] >= 0
    assert (row["token_types"][context] == 1).all()
    start = k * stride
    span = np.flatnonzero(context)
    assert list(row["inputs"][span]) == pieces[start:start + len(span)]
    seen[start:start + len(span)] += 1
    best[start:start + len(span)] += row["max_context"][span]
    if row["start_labels"] > 0:
      labelled += 1
      got = row["word_index"][row["start_labels"]], row["word_index"][row["end_labels"]]
      assert got == answer_words
      assert row["start_labels"] >= offset
    else:
      assert row["end_labels"] == 0
  assert (seen >= 1).all()               # every piece is in some window
  assert (best == 1).all()               # ...and is max-context in exactly one
  assert labelled >= 1
  assert len(rows) == len(qa.window_starts(len(pieces), seq_len - offset - 1, stride))


def test_too_short_rows_are_an_error():
  with pytest.raises(ValueError, match="doc_stride=10 <= that"):
    qa.encode_qa(WordTokenizer(), example(), 0, 16, max_query_len=8, doc_stride=10)


# --- decoding and metrics ------------------------------------------------------------------------

def perfect_predictions(rows, answer_rows=None, start_shift=0):
  """Logits that put the answer of each labelled window first (others low)."""
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  start = np.full(batch["inputs"].shape, -5.0)
  end = np.full(batch["inputs"].shape, -5.0)
  for i, row in enumerate(rows):
    if row["start_labels"] > 0 and (answer_rows is None or i in answer_rows):
      start[i, row["start_labels"] + start_shift] = 5.0
      end[i, row["end_labels"]] = 5.0
  out = {"start_logits": start, "end_logits": end}
  out.update({k: batch[k] for k in extractive_qa.PASSED_THROUGH})
  return out


SETTINGS = types.SimpleNamespace(n_best=20, max_answer_len=30)


def evaluated(examples):
  return EvalSet(examples, (), None, types.SimpleNamespace(qa=SETTINGS))


def test_decoding_recovers_the_answer_text_across_windows():
  tok = WordTokenizer()
  exs = [example(), dict(example("Who?", "The quick brown fox"), id="q2")]
  rows = [r for i, ex in enumerate(exs) for r in qa.encode_qa(tok, ex, i, 24, 8, 4)]
  records = extractive_qa.records(perfect_predictions(rows), evaluated(exs))
  assert [r["prediction"] for r in records] == ["under an enormous oak tree",
                                                 "The quick brown fox"]
  assert extractive_qa.score(perfect_predictions(rows), evaluated(exs)) == {
      "exact_match": 1.0, "f1": 1.0}


def test_decoding_respects_max_answer_len_and_order():
  tok = WordTokenizer()
  rows = qa.encode_qa(tok, example(), 0, 64, 8, 16)   # one window
  assert len(rows) == 1
  preds = perfect_predictions(rows)
  length = rows[0]["end_labels"] - rows[0]["start_labels"] + 1
  short = types.SimpleNamespace(n_best=20, max_answer_len=int(length) - 1)
  # the gold span is too long now: the best allowed span is shorter (start or end moves)
  (text,) = [t for _, t in extractive_qa.answer_texts(preds, [example()], short)]
  assert text != "under an enormous oak tree" and len(tok.encode(text)) < length
  # an end before the start is never chosen: move the start logit past the end
  swapped = perfect_predictions(rows, start_shift=int(length))
  score, first, last = extractive_qa.best_spans(swapped, 20, 30)[0]
  assert score == 0.0 and first <= last   # not the 5 + 5 pair (start "until", end "tree")


def test_padding_rows_are_ignored():
  tok = WordTokenizer()
  rows = qa.encode_qa(tok, example(), 0, 64, 8, 16)
  pad = {k: np.full_like(v, -1) if k in ("word_index", "example_index", "start_labels",
                                          "end_labels") else np.zeros_like(v)
         for k, v in rows[0].items()}
  preds = perfect_predictions(rows + [pad])
  assert [t for _, t in extractive_qa.answer_texts(preds, [example()], SETTINGS)] == [
      "under an enormous oak tree"]


@pytest.mark.parametrize("prediction, gold, em, f1", [
    ("The Cat, sat!", "cat sat", 1.0, 1.0),            # case, punctuation, article
    ("the cat sat", "a cat sat down", 0.0, 0.8),       # P = 2/2, R = 2/3
    ("cat cat", "cat", 0.0, 2 / 3),                    # counts clip: P = 1/2, R = 1
    ("an apple", "the", 0.0, 0.0),                     # gold normalises to nothing
    ("  Oak   tree. ", "oak tree", 1.0, 1.0),
    ("dog", "fox", 0.0, 0.0),
])
def test_official_squad_metrics(prediction, gold, em, f1):
  assert scores.exact_match(prediction, gold) == em
  assert scores.answer_f1(prediction, gold) == pytest.approx(f1)


def test_best_over_gold_answers():
  ex = example()
  ex["answers"] = {"text": ["the lazy dog", "under an enormous oak tree"],
                   "answer_start": [CONTEXT.index("the lazy"), CONTEXT.index("under")]}
  rows = qa.encode_qa(WordTokenizer(), example(), 0, 64, 8, 16)
  (row,) = extractive_qa.records(perfect_predictions(rows), evaluated([ex]))
  assert row["exact_match"] == 1.0 and row["f1"] == 1.0


def test_loss_is_mean_start_end_cross_entropy():
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  start, end = rng.normal(size=(2, 6)), rng.normal(size=(2, 6))
  batch = {"segment_ids": jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
           "start_labels": jnp.array([2, -1]), "end_labels": jnp.array([3, -1])}
  norms = extractive_qa.normalizers(batch)
  loss, sums = extractive_qa.loss_fn({"span_start": jnp.array(start), "span_end": jnp.array(end)},
                                     batch, norms)
  def ce(logits, label):
    logits = logits[:4]                      # padding pieces are not candidates
    return np.log(np.exp(logits).sum()) - logits[label]
  assert float(loss) == pytest.approx((ce(start[0], 2) + ce(end[0], 3)) / 2, rel=1e-5)
  assert float(sums["windows"]) == 1


# --- end to end ----------------------------------------------------------------------------------

def test_qa_from_squad_files_through_the_cli(cli, tmp_path):
  """corpus=squad reads user files named by flags; training logs EM/F1; evaluation writes
  per-question rows."""
  examples = aclsum_qa.synthesize("validation")
  write_squad(examples[:24], tmp_path / "train.json")
  write_squad(examples[24:36], tmp_path / "dev.json")
  overrides = {**TINY, "seq_len": 64, "qa.max_query_len": 16, "qa.doc_stride": 32,
               "total_steps": 2, "vocab_size": 500, "eval_batches": -1, "corpus": "squad",
               "data_files.train": str(tmp_path / "train.json"),
               "data_files.validation": str(tmp_path / "dev.json"),
               "data_dir": str(tmp_path / "data")}
  proc = cli("train", "configs/finetune_qa.py:init=scratch", tmp_path / "run",
             *config_flags(overrides), devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
           .splitlines()][-1]
  assert {"eval/exact_match", "eval/f1", "eval/start_accuracy"} <= set(final)
  # llm.evaluate's function on the run's checkpoint: per-question rows.
  evaluate_checkpoint(load_config("finetune_qa", "init=scratch", **overrides), tmp_path / "run")
  rows = [json.loads(line) for line in (tmp_path / "run" / "predictions_validation.jsonl")
          .read_text().splitlines()]
  assert sorted(r["id"] for r in rows) == sorted(e["id"] for e in examples[24:36])
  result = json.loads((tmp_path / "run" / "evaluate.json").read_text())
  assert np.mean([r["f1"] for r in rows]) == pytest.approx(result["f1"])
  contexts = {e["id"]: e["context"] for e in examples}
  assert all(r["prediction"] in contexts[r["id"]] for r in rows)


def test_squad_corpus_needs_its_files():
  with pytest.raises(ValueError, match=r"set --config.data_files.train=PATH"):
    corpora.corpus_builder(load_config("finetune_qa", "init=scratch", corpus="squad"))
  config = load_config("finetune_qa", "init=scratch", corpus="squad", **{
      "data_files.train": "/nope.json", "data_files.validation": "/nope.json"})
  with pytest.raises(FileNotFoundError, match="data_files.train='/nope.json' does not exist"):
    corpora.corpus_builder(config)


def test_seq_len_too_short_for_qa_windows():
  with pytest.raises(ValueError, match=r"need seq_len >= qa.max_query_len \+ qa.doc_stride \+ 3 "
                                       r"= 163"):
    config_checks.check_config(load_config("finetune_qa", "init=scratch", seq_len=64), 8)
