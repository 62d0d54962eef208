"""Input pipeline: causal-LM shifting and packing, BERT rows, exact iterator resume, eval cover."""

import grain
import numpy as np
import pytest

from llm import tasks
from llm.data import batching, corpora, position, tokenizer as tokenizer_lib
from llm.data.tokenizer import BOS

from helpers import load_config


@pytest.fixture(scope="module")
def corpus():
  config = load_config("gpt_tiny")
  builder = corpora.prepare_corpus(config)
  return builder, tokenizer_lib.load_tokenizer(config, builder)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def train_iterator(config, tok, builder):
  return batching.train_iterator(config, tasks.get_task(config.objective), tok, builder)


def test_corpus_splits_are_disjoint_real_text(corpus):
  builder, _ = corpus
  train, valid = builder.as_data_source("train"), builder.as_data_source("validation")
  train_ids = {train[i]["id"] for i in range(len(train))}
  valid_ids = {valid[i]["id"] for i in range(len(valid))}
  assert not train_ids & valid_ids
  assert len(train_ids) + len(valid_ids) == 406    # 106 Wikipedia + 300 Lee news articles
  assert 20 <= len(valid_ids) <= 70
  assert "alphabet" in " ".join(train[i]["text"].decode() for i in range(len(train))).lower()


def test_causal_lm_rows_are_shifted_and_packed(corpus):
  builder, tok = corpus
  config = load_config("gpt_tiny", seq_len=64, batch_size=4)
  batch = next(train_iterator(config, tok, builder))
  assert batch["inputs"].shape == (4, 64)
  seg, inputs, targets, pos = (batch[k] for k in ("segment_ids", "inputs", "targets", "positions"))
  assert (seg > 0).all()   # concat-then-split packing leaves no padding in training rows
  same = seg[:, 1:] == seg[:, :-1]
  # Within a segment, the target at t is the input at t + 1 and positions count up by one.
  np.testing.assert_array_equal(targets[:, :-1][same], inputs[:, 1:][same])
  np.testing.assert_array_equal(pos[:, 1:][same], pos[:, :-1][same] + 1)
  # Every new segment (a document, or the rest of one cut at a row end) restarts positions, and
  # <s> only ever opens a document.
  starts = np.concatenate([np.ones((4, 1), bool), ~same], axis=1)
  assert (pos[starts] == 0).all()
  assert (inputs == BOS).any() and (pos[inputs == BOS] == 0).all()


@pytest.mark.parametrize("arg", ["variant=bert", "variant=roberta"])
def test_masked_lm_rows(corpus, arg):
  builder, tok = corpus
  config = load_config("bert_tiny", arg, seq_len=64, batch_size=8)
  batch = next(train_iterator(config, tok, builder))
  inputs, targets, seg = batch["inputs"], batch["targets"], batch["segment_ids"]
  chosen = targets > 0
  assert chosen.any() and not (chosen & (seg == 0)).any()
  # ~15% of real tokens are prediction targets; most of them show [MASK].
  assert 0.08 < chosen.sum() / (seg > 0).sum() < 0.2
  assert (inputs[chosen] == tok.mask_id).mean() > 0.6
  # The MLM head scores only `mlm_positions`: exactly the chosen positions, then padding at 0.
  positions = batch["mlm_positions"]
  assert positions.shape == (8, 10)   # ceil(0.15 x 64)
  for row in range(8):
    count = chosen[row].sum()
    np.testing.assert_array_equal(positions[row, :count], np.flatnonzero(chosen[row]))
    assert (positions[row, count:] == 0).all()
  if arg == "variant=bert":
    assert (inputs[:, 0] == tok.cls_id).all()
    assert set(np.unique(batch["nsp_labels"])) <= {0, 1}
    assert set(np.unique(batch["token_types"][seg > 0])) == {0, 1}
    assert ((inputs == tok.sep_id).sum(axis=1) == 2).all()
  else:
    assert "nsp_labels" not in batch


@pytest.mark.parametrize("name,arg", [("gpt_tiny", None), ("bert_tiny", "variant=bert"),
                                      ("bert_tiny", "variant=roberta")])
def test_iterator_state_restores_exact_position(corpus, name, arg):
  builder, tok = corpus
  config = load_config(name, arg, seq_len=64, batch_size=4)
  first = train_iterator(config, tok, builder)
  take(first, 3)
  state = first.get_state()
  expected = take(first, 3)
  second = train_iterator(config, tok, builder)
  second.set_state(state)
  assert_batches_equal(take(second, 3), expected)


def test_static_vs_dynamic_masking_across_epochs(corpus):
  """Static masking repeats an epoch's examples exactly; dynamic masking re-masks them."""
  _, tok = corpus
  texts = [f"Sentence number {i} of document {d} is here. It has a second part {d}."
           for d in range(6) for i in range(1)]
  docs = grain.MapDataset.source([(i, {"text": t}) for i, t in enumerate(texts)])
  for masking, same in (("static", True), ("dynamic", False)):
    config = load_config("bert_tiny", masking=masking, seq_len=32)
    rows = list(tasks.get_task("masked_lm").rows(docs.repeat(2), docs, config, tok, True))
    half = len(rows) // 2
    equal = all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(rows[:half], rows[half:]))
    assert equal == same, masking


def test_eval_batches_cover_every_row_once(corpus):
  builder, tok = corpus
  config = load_config("gpt_tiny", seq_len=64, batch_size=8)
  batches = batching.eval_batches(config, tasks.get_task(config.objective), tok,
                                  builder)
  docs = corpora.documents(builder, "validation")
  rows = list(tasks.get_task("causal_lm").rows(docs, config, tok))
  stacked = np.concatenate([b["inputs"] for b in batches])
  assert len(stacked) == len(batches) * 8 >= len(rows) > len(stacked) - 8
  np.testing.assert_array_equal(stacked[:len(rows)], np.stack([r["inputs"] for r in rows]))
  assert (stacked[len(rows):] == 0).all()   # padding rows carry no tokens and no targets


def test_eval_batches_read_input_shards_side_by_side_and_a_process_builds_only_its_own(corpus):
  """input_shards=4, batch 8: shard s (documents s, s+4, ...) fills rows [2s, 2s+2) of every
  batch, every row once; a process holding rows 4-7 builds shards 2 and 3 alone and gets the
  same rows there. With accumulation the shards that divide the micro-batch are used."""
  builder, tok = corpus
  task = tasks.get_task("causal_lm")
  config = load_config("gpt_tiny", seq_len=64, batch_size=8, input_shards=4)
  batches = batching.eval_batches(config, task, tok, builder)
  docs = corpora.documents(builder, "validation")
  lengths = []
  for s in range(4):
    rows = np.stack([r["inputs"] for r in task.rows(docs[s::4], config, tok)])
    placed = np.concatenate([b["inputs"][2 * s:2 * s + 2] for b in batches])
    np.testing.assert_array_equal(placed[:len(rows)], rows)
    assert (placed[len(rows):] == 0).all()
    lengths.append(len(rows))
  assert len(batches) == -(-max(lengths) // 2)
  mine = batching.eval_batches(config, task, tok, builder, rows=[4, 5, 6, 7])
  assert len(mine) == len(batches)
  for got, full in zip(mine, batches):
    np.testing.assert_array_equal(got["inputs"][4:], full["inputs"][4:])
    assert (got["inputs"][:4] == 0).all()
  accumulating = load_config("gpt_tiny", seq_len=64, batch_size=8, input_shards=4,
                             **{"optimizer.grad_accum_steps": 4})
  assert batching.eval_shards(accumulating, len(docs)) == 2
  # 64 shards of 42 validation documents would leave some empty: 16 shards of >= 2 documents.
  many = load_config("gpt_tiny", seq_len=64, batch_size=64, input_shards=64)
  assert len(docs) == 42 and batching.eval_shards(many, len(docs)) == 16
  # However many shards, every validation token is a target exactly once.
  targets = lambda c: sum(int((b["targets"] > 0).sum())
                          for b in batching.eval_batches(c, task, tok, builder))
  assert targets(many) == targets(config) == targets(load_config("gpt_tiny", seq_len=64)) > 0


def test_input_shards_split_the_documents_and_reorder_each_epoch(corpus):
  builder, _ = corpus
  config = load_config("gpt_tiny", input_shards=3)
  docs = corpora.documents(builder, "train")
  seen = []
  for shard in range(3):
    mine, stream = batching.shard_stream(docs, config, shard)
    n = len(mine)
    order = [stream[i][0] for i in range(2 * n)]
    assert sorted(order[:n]) == sorted(order[n:]) == [mine[i][0] for i in range(n)]
    assert order[:n] != order[n:]   # a fresh order each epoch
    seen += order[:n]
  assert sorted(seen) == list(range(len(docs)))   # every document in exactly one shard


@pytest.mark.parametrize("arg", ["variant=bert", "variant=roberta"])
def test_a_process_builds_only_its_input_shards(corpus, arg):
  """Processes holding input shards {0, 2} and {1, 3} of 4 build exactly those rows of the
  global batches a process building all four makes (the others are zeros); their saved
  positions, merged, resume a process that builds all four where the full one goes on."""
  builder, tok = corpus
  config = load_config("bert_tiny", arg, seq_len=64, batch_size=8, input_shards=4)
  task = tasks.get_task(config.objective)
  full = batching.train_iterator(config, task, tok, builder)
  halves = [batching.train_iterator(config, task, tok, builder, rows=rows)
            for rows in ([0, 1, 4, 5], [2, 3, 6, 7])]
  for _ in range(3):
    whole, parts = next(full), [next(h) for h in halves]
    for part, (mine, other) in zip(parts, [([0, 1, 4, 5], [2, 3, 6, 7]),
                                          ([2, 3, 6, 7], [0, 1, 4, 5])]):
      for k in whole:
        np.testing.assert_array_equal(part[k][mine], whole[k][mine])
        assert not part[k][other].any()
  states = [h.get_state() for h in halves]
  assert [sorted(s["shards"]) for s in states] == [["0", "2"], ["1", "3"]]
  resumed = batching.train_iterator(config, task, tok, builder)
  resumed.set_state(position.merge_states(states))
  assert_batches_equal(take(resumed, 2), take(full, 2))
  with pytest.raises(position.MissingShard, match="input shard 1 of 4"):
    batching.train_iterator(config, task, tok, builder).set_state(states[0])


def test_dynamic_masks_differ_between_input_shards(corpus):
  """The same documents in two input shards get other dynamic masks (a mask is seeded by the
  row's place in all shards' streams, not in its own only), and the same static ones."""
  _, tok = corpus
  texts = [f"Sentence number {d} of document {d} is here. It has a second part {d}."
           for d in range(8)]
  docs = grain.MapDataset.source([(i, {"text": t}) for i, t in enumerate(texts)])
  for masking, same in (("static", True), ("dynamic", False)):
    config = load_config("bert_tiny", "variant=roberta", masking=masking, seq_len=32,
                         input_shards=2)
    rows = [list(tasks.get_task("masked_lm").rows(docs, docs, config, tok, True, shard=shard))
            for shard in (0, 1)]
    equal = all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(*rows))
    assert equal == same, masking


@pytest.mark.parametrize("masking", ["static", "dynamic"])
def test_bert_rows_repeat_each_epoch_only_with_static_masking(corpus, masking):
  """Through the real training stream (shuffled, repeated): with static masking the second
  epoch holds exactly the first one's NSP rows and masks, in another order; with dynamic
  masking, other masks."""
  builder, tok = corpus
  config = load_config("bert_tiny", "variant=bert", masking=masking, seq_len=64,
                       input_shards=40)
  mine, stream = batching.shard_stream(corpora.documents(builder, "train"), config, 1)
  task = tasks.get_task("masked_lm")
  per_epoch = len(list(task.rows(mine, mine, config, tok, True, shard=1)))
  rows = iter(task.rows(stream, mine, config, tok, True, shard=1))
  epochs = [sorted(r["inputs"].tobytes() + r["nsp_labels"].tobytes() for r in take(rows, per_epoch))
            for _ in range(2)]
  assert (epochs[0] == epochs[1]) == (masking == "static")


def test_train_examples_is_a_fixed_sample_per_seed_and_all_the_stream_reads():
  config = load_config("finetune_topic", "init=scratch", train_examples=4, batch_size=8)
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  sample = [batching.training_documents(builder, config)[i][0] for i in range(4)]
  assert len(set(sample)) == 4 and all(0 <= i < 1777 for i in sample)
  other_seed = load_config("finetune_topic", "init=scratch", train_examples=4, seed=1)
  assert [batching.training_documents(builder, other_seed)[i][0] for i in range(4)] != sample
  larger = load_config("finetune_topic", "init=scratch", train_examples=10)
  assert set(sample) < {batching.training_documents(builder, larger)[i][0] for i in range(10)}
  # Ten batches of 8 rows read the 4 sampled articles over and over, and nothing else.
  rows = {tuple(row) for batch in take(train_iterator(config, tok, builder), 10)
          for row in batch["inputs"]}
  assert len(rows) == 4
  with pytest.raises(ValueError, match="train_examples=5000 is more than the 1,777 training "
                                       "examples of bbc_news"):
    batching.training_documents(builder, load_config("finetune_topic", "init=scratch",
                                                     train_examples=5000))
