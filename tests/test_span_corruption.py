"""T5 span corruption: the corruption is invertible, its statistics match the settings, rows pack
pairs on both sides, the relative-position buckets match transformers' T5, and t5_tiny trains."""
import json

import numpy as np
import pytest

from llm import config_checks, tasks
from llm.data import batching, corpora, tokenizer as tokenizer_lib
from llm.data.tokenizer import BOS, EOS
from llm.models.layers import relative_bucket
from llm.tasks import span_corruption as sc

from helpers import load_config

SENTINELS = list(range(999, 899, -1))   # vocabulary of 1000, sentinels from the end


def reconstruct(inputs, targets):
  """The original text: every sentinel in the inputs replaced by the span it hides."""
  spans, current = {}, None
  for t in targets[:-1]:
    if t in SENTINELS:
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  out = []
  for t in inputs[:-1]:
    out += spans[t] if t in SENTINELS else [t]
  return out


def test_corruption_is_invertible_and_uses_sentinels_in_order():
  rng = np.random.default_rng(0)
  for length in (2, 3, 10, 57, 200):
    ids = list(rng.integers(10, 800, length))
    inputs, targets = sc.corrupt(ids, 0.15, 3.0, SENTINELS, rng)
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert reconstruct(inputs, targets) == ids
    used = [t for t in inputs if t in SENTINELS]
    assert used == SENTINELS[:len(used)] == [t for t in targets if t in SENTINELS]
    noise = len(targets) - 1 - len(used)
    assert noise == min(max(round(length * 0.15), 1), length - 1)


@pytest.mark.parametrize("density,mean,length", [(0.15, 3.0, 100), (0.3, 8.0, 160),
                                                 (0.15, 3.0, 77)])
def test_noise_density_and_span_lengths_match_the_settings(density, mean, length):
  rng = np.random.default_rng(1)
  noise, total, spans = 0, 0, []
  for _ in range(2000):
    keep, drop = sc.noise_spans(length, density, mean, rng)
    assert keep.min() >= 1 and drop.min() >= 1 and keep.sum() + drop.sum() == length
    noise += drop.sum()
    total += length
    spans += list(drop)
  # Whole tokens and whole spans per piece: the figures are the settings, rounded.
  assert noise / total == pytest.approx(density, abs=0.5 / length)
  assert np.mean(spans) == pytest.approx(mean, rel=0.1)
  assert len(set(spans)) > 3   # span lengths vary


def test_corrupted_pieces_fit_their_rows():
  rng = np.random.default_rng(2)
  for seq_len in (32, 128, 512):
    raw, longest = sc.lengths(seq_len, 0.15, 3.0)
    for _ in range(200):
      inputs, targets = sc.corrupt(list(rng.integers(10, 800, raw)), 0.15, 3.0, SENTINELS, rng)
      assert len(inputs) <= seq_len and len(targets) <= longest
    assert raw > seq_len   # the dropped spans make room for more text


def test_rows_pack_source_and_target_segments_together(tmp_path):
  config = load_config("t5_tiny", seq_len=64, batch_size=4)
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  task = tasks.get_task("span_corruption")
  batch = next(batching.train_iterator(config, task, tok, builder))
  assert batch["inputs"].shape == (4, 64)
  assert batch["targets"].shape == (4, sc.target_len(config))
  for row in range(4):
    src, tgt = batch["segment_ids"][row], batch["decoder_segment_ids"][row]
    assert set(src[src > 0]) == set(tgt[tgt > 0])   # every source has its target in the row
    for seg in set(tgt[tgt > 0]):
      targets = batch["targets"][row][tgt == seg]
      decoder_inputs = batch["decoder_inputs"][row][tgt == seg]
      inputs = batch["inputs"][row][src == seg]
      assert decoder_inputs[0] == BOS and list(decoder_inputs[1:]) == list(targets[:-1])
      assert targets[-1] == EOS and inputs[-1] == EOS
      assert targets[0] == 8127 and inputs.max() >= 8127 - 20   # sentinels from the end
      assert list(batch["decoder_positions"][row][tgt == seg]) == list(range(len(targets)))


def test_relative_buckets_match_transformers_t5():
  torch = pytest.importorskip("torch")
  t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
  offsets = np.arange(-300, 301, dtype=np.int32)
  for bidirectional in (True, False):
    for buckets, distance in ((32, 128), (16, 64)):
      theirs = t5.T5Attention._relative_position_bucket(
          torch.from_numpy(offsets), bidirectional=bidirectional, num_buckets=buckets,
          max_distance=distance).numpy()
      ours = np.asarray(relative_bucket(offsets, bidirectional, buckets, distance))
      np.testing.assert_array_equal(ours, theirs)


def test_bad_span_settings_are_named():
  config = load_config("t5_tiny", **{"span_corruption.noise_density": 1.5})
  with pytest.raises(ValueError, match=r"span_corruption.noise_density=1.5 must be in \(0, 1\)"):
    config_checks.check_config(config, 8)
  config = load_config("t5_tiny", extra_ids=3)
  with pytest.raises(ValueError, match=r"extra_ids=3 sentinels are too few .* set "
                                       r"--config.extra_ids=\d+ or more"):
    config_checks.check_config(config, 8)
  config = load_config("bert_tiny", objective="span_corruption")
  with pytest.raises(ValueError, match=r"objective='span_corruption' needs a model.family in "
                                       r"\['encoder_decoder'\], not 'encoder'"):
    config_checks.check_config(config, 8)


def test_t5_tiny_trains_and_evaluates_from_the_cli(cli, tmp_path):
  """T5.1.1 from the CLI, then llm.evaluate's function on its checkpoint; the original
  Transformer variant shares every code path but its presets, which the layer and decoding
  tests cover."""
  from helpers import TINY, tiny_overrides
  from llm.evaluation import evaluate_checkpoint
  overrides = {"total_steps": 30, "model.num_decoder_layers": 2, "log_every": 10,
               "optimizer.warmup_steps": 5, "optimizer.learning_rate": 3e-3,
               "model.head_dim": 16, "seq_len": 64}
  proc = cli("train", "configs/t5_tiny.py", tmp_path, *tiny_overrides(**overrides), devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 1.0, rows
  evaluate_checkpoint(load_config("t5_tiny", **{**TINY, **overrides}), tmp_path)
  result = json.loads((tmp_path / "evaluate.json").read_text())
  assert result["step"] == 30 and result["perplexity"] < 8128
  assert result["perplexity"] == pytest.approx(rows[-1]["eval/perplexity"], rel=1e-5)
