"""Fill in the middle: the reordering is a permutation of the document behind its sentinels, rate
0 gives causal LM's rows exactly, rate 1 reorders every document (anew each epoch, the same in
evaluation), and fim_tiny trains."""
import grain
import numpy as np
import pytest

from llm import config_checks, tasks
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.tasks import fill_in_middle as fim
from llm.training import train_and_evaluate

from helpers import load_config, losses, tiny_config

PRE, SUF, MID = 99, 98, 97


def restore(row):
  """The document a PSM row came from: the middle (after <MID>) put back between the prefix and
  the suffix."""
  pre, suf, mid = row.index(PRE), row.index(SUF), row.index(MID)
  assert pre == 0 and pre < suf < mid
  return row[1:suf] + row[mid + 1:] + row[suf + 1:mid]


def test_reordering_keeps_every_token_and_moves_the_middle_last():
  rng = np.random.default_rng(0)
  for _ in range(200):
    ids = list(rng.integers(1, 90, size=rng.integers(0, 12)))
    cuts = np.sort(rng.integers(0, len(ids) + 1, size=2))
    row = fim.reorder(ids, cuts, (PRE, SUF, MID))
    assert restore(row) == ids
    assert row[row.index(MID) + 1:] == ids[cuts[0]:cuts[1]]
  assert fim.reorder([1, 2, 3, 4, 5], (1, 3), (PRE, SUF, MID)) == [PRE, 1, SUF, 4, 5, MID, 2, 3]


@pytest.fixture(scope="module")
def corpus():
  config = load_config("fim_tiny", seq_len=64)
  builder = corpora.prepare_corpus(config)
  return builder, tokenizer_lib.load_tokenizer(config, builder)


def inputs(rows):
  """The tokens of each row, padding left out."""
  return [list(row["inputs"][row["segment_ids"] > 0]) for row in rows]


def fim_rows(config, tok, docs, train=False, repeat=1):
  task = tasks.get_task("fill_in_middle")
  return list(task.make_rows(docs=docs.repeat(repeat), all_docs=docs, config=config, tok=tok,
                             train=train))


def test_rate_zero_is_causal_lm_and_rate_one_reorders_every_document(corpus):
  builder, tok = corpus
  docs = corpora.documents(builder, "validation")[:20]
  plain = load_config("fim_tiny", "rate=0", seq_len=64)
  expected = list(tasks.get_task("causal_lm").rows(docs, plain, tok))
  got = fim_rows(plain, tok, docs)
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

  # Rate 1, on short texts that each fit a row: every document comes back whole, reordered.
  config = load_config("fim_tiny", "rate=1", seq_len=64)
  pre, suf, mid = fim.sentinel_ids(config)
  top = config.vocab_size + config.extra_ids - 1
  assert (pre, suf, mid) == (top, top - 1, top - 2)
  short = short_docs()
  rows = fim_rows(config, tok, short)
  # Rows are cut from one stream of documents: each adds its tokens but the last (</s>) to the
  # inputs, so the inputs read in order hold every document, each starting at its <PRE>.
  stream = [int(t) for row in rows for t in row["inputs"][row["segment_ids"] > 0]]
  starts = [i for i, t in enumerate(stream) if t == pre] + [len(stream) + tok.add_bos]
  assert len(starts) - 1 == len(short)
  for (_, doc), begin, end in zip(short, starts, starts[1:]):
    row = [PRE if t == pre else SUF if t == suf else MID if t == mid else t
           for t in stream[begin:end - tok.add_bos]]
    assert restore(row) == tok.encode(doc["text"])


def short_docs():
  texts = [f"Sentence {i} of the test is short, and it has {i} words more." for i in range(12)]
  return grain.MapDataset.source([(i, {"text": t}) for i, t in enumerate(texts)])


def test_each_epoch_cuts_anew_and_evaluation_always_the_same(corpus):
  _, tok = corpus
  docs = short_docs()
  config = load_config("fim_tiny", "rate=1", seq_len=64)
  train = sum(inputs(fim_rows(config, tok, docs, train=True, repeat=2)), [])
  half = len(train) // 2
  assert sorted(train[:half]) == sorted(train[half:]) and train[:half] != train[half:]
  assert inputs(fim_rows(config, tok, docs)) == inputs(fim_rows(config, tok, docs))


def test_too_few_sentinels_are_named_and_only_tasks_that_use_them_take_them():
  with pytest.raises(ValueError, match=r"extra_ids=2: fill_in_middle needs 3 ids past the "
                                       r"tokenizer's for <PRE>, <SUF>, <MID>"):
    config_checks.check_config(tiny_config("fim_tiny", extra_ids=2), 8)
  with pytest.raises(ValueError, match=r"extra_ids=3: only .*fill_in_middle"):
    config_checks.check_config(tiny_config("gpt_tiny", extra_ids=3), 8)
  with pytest.raises(ValueError, match=r"fim.rate=1.5 must be in \[0, 1\]"):
    config_checks.check_config(tiny_config("fim_tiny", **{"fim.rate": 1.5}), 8)


def test_fim_tiny_trains(tmp_path):
  result = train_and_evaluate(tiny_config("fim_tiny", total_steps=3), tmp_path)
  assert sorted(losses(tmp_path)) == [1, 2, 3] and np.isfinite(result["perplexity"])
