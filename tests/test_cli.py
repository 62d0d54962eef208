"""The command line as a user meets it: end-to-end runs and every bad input's one-line error."""
import importlib.util
import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from llm.data import corpora

from helpers import garble, load_config, tiny_overrides

FAST = ["--config.total_steps=30", "--config.optimizer.warmup_steps=5",
        "--config.optimizer.learning_rate=3e-3", "--config.eval_every=30"]


def records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def check_ok(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("config,loss_key", [("configs/gpt_tiny.py", "train/loss"),
                                             ("configs/bert_tiny.py", "train/mlm_loss")])
def test_train_from_the_cli_loss_falls_then_evaluate(cli, tmp_path, config, loss_key):
  proc = cli("train", config, tmp_path, *tiny_overrides(), *FAST, devices=1)
  check_ok(proc)
  rows = records(tmp_path)
  assert [r["step"] for r in rows] == list(range(1, 31))
  first, last = rows[0][loss_key], rows[-1][loss_key]
  assert last < first - 0.5, (first, last)
  assert "eval/perplexity" in rows[-1] and "train/tokens_per_sec" in rows[-1]
  assert "validation perplexity:" in proc.stdout
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 30
  # TensorBoard's own reader sees the same scalars as metrics.jsonl.
  events = EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars(loss_key)] == [
      (r["step"], pytest.approx(r[loss_key], rel=1e-6)) for r in rows]
  if "bert" in config:
    assert 0.0 <= rows[-1]["eval/nsp_accuracy"] <= 1.0
  # llm.evaluate restores the last checkpoint and reproduces the final in-training evaluation.
  proc = cli("evaluate", config, tmp_path, *tiny_overrides(), *FAST, devices=1)
  check_ok(proc)
  result = json.loads((tmp_path / "evaluate.json").read_text())
  assert result["step"] == 30
  assert result["perplexity"] == pytest.approx(rows[-1]["eval/perplexity"], rel=1e-6)


# What only a process shows: the command line's own errors and one from the data layer; the rest
# of the config checks run in-process (test_bad_inputs).
BAD_INPUTS = [
    (["--config.nosuchkey=1"], "unknown config key nosuchkey"),
    (["--config.batch_size=abc"], "--config.batch_size=abc"),
    (["--config.corpus=nope"], "corpus='nope': expected one of"),
]


def check_one_line_error(proc, expected):
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]


@pytest.mark.parametrize("args,expected", BAD_INPUTS)
def test_bad_config_values(cli, tmp_path, args, expected):
  check_one_line_error(cli("train", "configs/gpt_tiny.py", tmp_path / "w", *args), expected)
  assert not (tmp_path / "w" / "checkpoints").exists() or not any(
      (tmp_path / "w" / "checkpoints").iterdir())


def test_bad_config_file_and_arg(cli, tmp_path):
  check_one_line_error(cli("train", "configs/nope.py", tmp_path), "config file configs/nope.py")
  check_one_line_error(cli("train", "configs/bert_tiny.py:size=huge", tmp_path), "size='huge'")


def test_unwritable_workdir(cli, tmp_path):
  (tmp_path / "file").write_text("")
  check_one_line_error(cli("train", "configs/gpt_tiny.py", tmp_path / "file" / "w"),
                       "is not writable")


def test_evaluate_without_checkpoint(cli, tmp_path):
  check_one_line_error(cli("evaluate", "configs/gpt_tiny.py", tmp_path), "no checkpoint in")
  assert not (tmp_path / "checkpoints").exists()   # a reader leaves nothing behind


def snapshot(folder):
  return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in folder.rglob("*") if p.is_file()}


def test_checkpoint_of_another_shape_or_corrupt_is_refused_untouched(cli, tmp_path, trained_gpt):
  shutil.copytree(trained_gpt, tmp_path, dirs_exist_ok=True)
  shutil.rmtree(tmp_path / "checkpoints" / "2")   # step 4 alone: nothing earlier to fall back on
  same = tiny_overrides(total_steps=6, **{"optimizer.warmup_steps": 2})   # as trained_gpt's
  before = snapshot(tmp_path / "checkpoints")
  proc = cli("train", "configs/gpt_tiny.py", tmp_path, *same, "--config.model.num_layers=3",
             devices=1)
  check_one_line_error(proc, "model.num_layers 2 vs 3")
  assert snapshot(tmp_path / "checkpoints") == before
  # Garble the saved arrays: the resume fails with one line and touches nothing else.
  garble(tmp_path / "checkpoints" / "4")
  before = snapshot(tmp_path / "checkpoints")
  proc = cli("train", "configs/gpt_tiny.py", tmp_path, *same, devices=1)
  check_one_line_error(proc, "does not match the checksums saved with it")
  assert snapshot(tmp_path / "checkpoints") == before


def test_missing_corpus_package_is_named(monkeypatch, tmp_path):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "gensim" else real_find_spec(name, *a))
  with pytest.raises(FileNotFoundError, match="needs the pip package gensim"):
    corpora.prepare_corpus(load_config("gpt_tiny", data_dir=str(tmp_path)))
