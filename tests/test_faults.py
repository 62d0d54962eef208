"""Faults and bad input: a diverging run, config files and keys a user gets wrong. Marked `fault`
(run them alone with `pytest -m fault`)."""
import errno
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from llm import checkpoint, checksums, cli, config_checks, lock
from llm.training import train_and_evaluate

from helpers import ROOT, garble, losses, run_cli, tiny_config, tiny_overrides, xla_flags

pytestmark = pytest.mark.fault


def saved_steps(workdir):
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def all_finite(workdir, step):
  state = ocp.PyTreeCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
  return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def test_nonfinite_loss_stops_the_run_naming_the_step_and_saves_nothing_bad(tmp_path):
  config = tiny_config(total_steps=8, checkpoint_every=2, log_every=4, nan_at_step=3)
  with pytest.raises(ValueError, match=r"not finite at step 3; not applied.*newest checkpoint: 2"):
    train_and_evaluate(config, tmp_path)
  # Step 4 (the first check after step 3) and later were never saved; step 2 is whole and finite.
  assert saved_steps(tmp_path) == [2]
  assert all_finite(tmp_path, 2)


def test_nonfinite_steps_are_skipped_when_asked_and_bounded(tmp_path, capsys):
  config = tiny_config(total_steps=6, checkpoint_every=3, nan_at_step=2, on_nonfinite="skip")
  train_and_evaluate(config, tmp_path / "skip")
  rows = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text()
          .splitlines()]
  assert rows[-1]["train/skipped_steps"] == 1 and math.isfinite(rows[-1]["train/loss"])
  # Step 2's interval (log_every=1) applied no step: it shows the count, not a loss of 0.
  assert rows[1] == {"step": 2, "train/skipped_steps": 1,
                     "train/learning_rate": pytest.approx(rows[1]["train/learning_rate"])}
  assert "step 2: skipped (non-finite), as every step since the last log" in \
      capsys.readouterr().out
  assert saved_steps(tmp_path / "skip") == [3, 6] and all_finite(tmp_path / "skip", 6)
  with pytest.raises(ValueError, match="exceed max_nonfinite_skips=0"):
    train_and_evaluate(tiny_config(total_steps=4, nan_at_step=2, on_nonfinite="skip",
                                   max_nonfinite_skips=0), tmp_path / "bounded")


def test_total_steps_below_the_checkpoint_is_refused_and_a_finished_run_reruns(tmp_path, capsys):
  first = train_and_evaluate(tiny_config(total_steps=3), tmp_path)
  with pytest.raises(ValueError, match=r"checkpoint at step 3, past total_steps=2; set "
                                       r"--config.total_steps=3 or more"):
    train_and_evaluate(tiny_config(total_steps=2), tmp_path)
  assert saved_steps(tmp_path) == [3]
  # Rerun = resume, also once the run is finished: it says so and evaluates the last step again.
  lines, files = (tmp_path / "metrics.jsonl").read_text(), sorted(p.name for p in
                                                                  tmp_path.iterdir())
  capsys.readouterr()
  assert train_and_evaluate(tiny_config(total_steps=3), tmp_path) == pytest.approx(first)
  assert "is already trained to total_steps=3; evaluating its final checkpoint again" in \
      capsys.readouterr().out
  assert (tmp_path / "metrics.jsonl").read_text() == lines
  assert sorted(p.name for p in tmp_path.iterdir()) == files and saved_steps(tmp_path) == [3]


BAD_VALUES = [
    ({"optimizer.grad_accum_steps": 0}, "optimizer.grad_accum_steps=0 must be >= 1"),
    ({"keep_checkpoints": 0}, "keep_checkpoints=0 must be >= 1"),
    ({"keep_checkpoints": -2}, "keep_checkpoints=-2 must be >= 1"),
    ({"optimizer.learning_rate": float("nan")},
     "optimizer.learning_rate=nan must be finite and > 0"),
    ({"optimizer.learning_rate": -1e-3}, "optimizer.learning_rate=-0.001 must be > 0"),
    ({"eval_batches": 0}, "eval_batches=0 must be -1 (the whole validation split) or a positive"),
    ({"on_nonfinite": "ignore"}, "on_nonfinite='ignore': expected one of ['stop', 'skip']"),
    ({"input_shards": 3}, "input_shards=3 must divide batch_size=16"),
    ({"input_shards": 0}, "input_shards=0 must be >= 1"),
]


@pytest.mark.parametrize("overrides,expected", BAD_VALUES)
def test_bad_values_are_named(overrides, expected):
  with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("(", r"\(")
                     .replace(")", r"\)")):
    config_checks.check_config(tiny_config(**overrides), 8)


CONFIG_FILES = {
    "syntax.py": ("def get_config(:\n  pass\n", "config file {path}, line 1: invalid syntax"),
    "noget.py": ("x = 1\n", "config file {path} defines no get_config()"),
    "raises.py": ("def get_config():\n  raise RuntimeError('boom')\n",
                  "get_config() in {path} raised RuntimeError, line 2: boom"),
    "latin1.py": (b"# caf\xe9\ndef get_config():\n  pass\n", "config file {path} is not UTF-8"),
}


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_broken_config_files_are_one_line(tmp_path, name):
  text, expected = CONFIG_FILES[name]
  path = tmp_path / name
  path.write_bytes(text if isinstance(text, bytes) else text.encode())
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["llm.train", f"--config={path}", "--workdir=/tmp/unused"])
  assert str(e.value).startswith("error: " + expected.format(path=path)), str(e.value)


@pytest.mark.parametrize("arg,expected", [
    ("--config.optimizer.learning_rat=1e-3",
     "error: unknown config key optimizer.learning_rat; did you mean optimizer.learning_rate?"),
    ("--config.total_step=30", "error: unknown config key total_step; did you mean total_steps?"),
    ("--config.zzzqqq=1", "error: unknown config key zzzqqq; see the config file for its keys"),
])
def test_near_miss_config_keys_suggest_the_right_one(arg, expected):
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["llm.train", f"--config={ROOT}/configs/gpt_tiny.py", arg])
  assert str(e.value) == expected


def test_help_lists_the_flags_and_exits_0(tmp_path):
  proc = run_cli("generate", "configs/gpt_tiny.py", tmp_path, "--help")
  assert proc.returncode == 0, proc.stderr[-2000:]
  for flag in ("--config", "--workdir", "--max_new_tokens", "--top_p", "--config.KEY=VALUE"):
    assert flag in proc.stdout


def _start_training(workdir, total, **popen):
  """An `llm.train` subprocess with the tiny overrides (the in-process tiny_config's values),
  saving every step (conftest's shared compilation cache keeps each restart short)."""
  cmd = [sys.executable, "-u", "-m", "llm.train", "--config=configs/gpt_tiny.py",
         f"--workdir={workdir}", *tiny_overrides(total_steps=total, checkpoint_every=1,
                                                 **{"optimizer.warmup_steps": 2})]
  env = {**os.environ, "XLA_FLAGS": xla_flags(8)}
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, **popen)


def _saving_now(workdir):
  return any((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp"))


def test_kill_9_at_random_moments_and_sigterm_resume_to_an_uninterrupted_runs_losses(tmp_path):
  """Three kill -9 cycles (two of them while a step is being written, one at a random moment),
  then SIGTERM (a checkpoint at the next step, exit 0), then a run to the end: its losses equal
  an uninterrupted run's exactly."""
  total, run, rng = 14, tmp_path / "killed", random.Random(0)
  kills = []
  for cycle in range(4):
    proc = _start_training(run, total)
    seen = 0
    for line in proc.stdout:   # step k is logged after step k-1's save began, which waited
      seen += line.startswith("step ")   # for step k-2's: three lines, one step committed
      if seen == 3:
        break
    if cycle == 3:
      proc.send_signal(signal.SIGTERM)
      out, err = proc.communicate(timeout=300)
      assert proc.returncode == 0, err[-2000:]
      assert "Traceback" not in err and "SIGTERM: saving a checkpoint" in err
      assert f"saved step {saved_steps(run)[-1]}" in out
      break
    deadline = time.monotonic() + rng.uniform(0.0, 1.5)
    while cycle % 2 == 0 and not _saving_now(run) or cycle % 2 and time.monotonic() < deadline:
      time.sleep(0.002)
    during_save = _saving_now(run)
    proc.kill()
    proc.communicate(timeout=60)
    kills.append((saved_steps(run)[-1], during_save))
  assert [during for _, during in kills[::2]] == [True] * 2
  steps = [step for step, _ in kills]
  assert steps == sorted(steps) and saved_steps(run)[-1] < total   # each cycle got further
  train_and_evaluate(tiny_config(total_steps=total), run)
  assert not _saving_now(run)   # a killed save's temporary directory is cleared on resume
  train_and_evaluate(tiny_config(total_steps=total), tmp_path / "straight")
  assert losses(run) == losses(tmp_path / "straight")


# Files past 1 MB fail to write with EFBIG (SIGXFSZ ignored, so the write returns the error).
LIMIT_FILE_SIZE = ("bash", "-c", 'trap "" XFSZ; ulimit -f 1000; exec "$@"', "bash")


def test_a_failed_save_is_one_line_and_the_checkpoints_before_it_stay(tmp_path):
  """A disk that fills mid-run, simulated by a file-size limit (mounting a small tmpfs needs
  root): the write of step 4 fails with EFBIG; the run stops at once with one line, the failed
  step's temporary directory is gone, and step 2 is intact (rotation, keep_checkpoints=1, did
  not remove it)."""
  train_and_evaluate(tiny_config(total_steps=2), tmp_path)
  proc = run_cli("train", "configs/gpt_tiny.py", tmp_path,
                 *tiny_overrides(total_steps=12, checkpoint_every=2, keep_checkpoints=1),
                 launcher=LIMIT_FILE_SIZE)
  assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
  assert proc.stderr.startswith("error: saving checkpoint step 4 failed (EFBIG: File too large); "
                                "its partial files were removed and the steps before it are "
                                "intact (newest: 2)")
  assert max(losses(tmp_path)) < 12   # stopped once the failure surfaced, not at the end
  assert saved_steps(tmp_path) == [2] and not _saving_now(tmp_path)
  checkpoint.Checkpoints(tmp_path, 1, create=False).verify(2)   # byte for byte as saved


def test_a_second_run_on_a_workdir_is_refused_while_the_first_holds_it(tmp_path):
  held = lock.acquire(tmp_path)
  with pytest.raises(ValueError, match=rf"{tmp_path} is in use by another llm.train \(pid "
                                       rf"{os.getpid()} on "):
    train_and_evaluate(tiny_config(total_steps=2), tmp_path)
  held.close()   # released (as by any exit): the next run takes it
  train_and_evaluate(tiny_config(total_steps=2), tmp_path)
  assert saved_steps(tmp_path) == [2]


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, capsys, trained_gpt):
  shutil.copytree(trained_gpt, tmp_path, dirs_exist_ok=True)   # steps 1-4
  path = tmp_path / "metrics.jsonl"
  path.write_text(path.read_text() + '{"step": 5, "train/lo')   # a crash mid-write
  train_and_evaluate(tiny_config(total_steps=5), tmp_path)
  assert f"dropped unreadable line 5 of {path}" in capsys.readouterr().out
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_resuming_with_other_data_or_optimisation_settings_is_refused_unless_allowed(
    tmp_path, capsys, trained_gpt):
  shutil.copytree(trained_gpt, tmp_path, dirs_exist_ok=True)   # steps 2 and 4
  first = (tmp_path / "config.json").read_text()
  changed = dict(total_steps=5, batch_size=32, seed=1, input_shards=2,
                 **{"optimizer.grad_accum_steps": 2})
  with pytest.raises(ValueError, match=r"checkpoint vs now: batch_size 16 vs 32; input_shards 1 "
                                       r"vs 2; optimizer.grad_accum_steps 1 vs 2; seed 0 vs 1\)"):
    train_and_evaluate(tiny_config(**changed), tmp_path)
  assert saved_steps(tmp_path) == [2, 4]
  train_and_evaluate(tiny_config(allow_changed_config=True, **changed), tmp_path)
  assert saved_steps(tmp_path) == [2, 4, 5]
  assert ("warning: the data position was saved for input_shards=1, not 2: the input streams "
          "start from their beginnings") in capsys.readouterr().out
  assert (tmp_path / "config.json").read_text() == first   # the first run's, kept
  assert json.loads((tmp_path / "config.resume-4.json").read_text())["batch_size"] == 32


def test_an_unusable_data_dir_is_named(tmp_path):
  from llm.data import corpora
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match=r"data_dir='.*/file/data' cannot be used as a data "
                                       r"directory .*; set --config.data_dir=DIR"):
    corpora.data_dir(tiny_config(data_dir=str(tmp_path / "file" / "data")))



@pytest.mark.parametrize("position", ["{not json", "{}"])
def test_an_unusable_data_position_is_an_unreadable_step(tmp_path, capsys, position, trained_gpt):
  """A step whose data position was saved (and checksummed) as something that is not JSON, or
  not this pipeline's state, is moved aside like a corrupt one."""
  config = lambda total: tiny_config(total_steps=total, checkpoint_every=2)
  shutil.copytree(trained_gpt, tmp_path, dirs_exist_ok=True)   # config(4)'s run
  (tmp_path / "checkpoints" / "4" / "data" / "process_0-of-1.json").write_text(position)
  checksums.write(tmp_path / "checkpoints" / "4")   # as if written so
  train_and_evaluate(config(4), tmp_path)
  out = capsys.readouterr().out
  assert "warning: checkpoint step 4 is unreadable (data/process_0-of-1.json is unreadable (" \
         in out and "moved corrupt-4 aside and resumed from step 2" in out, out[-2000:]
  assert saved_steps(tmp_path) == [2, 4]


def test_a_step_that_cannot_be_moved_aside_is_one_error_and_nothing_is_lost(tmp_path,
                                                                          monkeypatch,
                                                                          trained_gpt):
  config = lambda total: tiny_config(total_steps=total, checkpoint_every=2)
  shutil.copytree(trained_gpt, tmp_path, dirs_exist_ok=True)   # config(4)'s run
  garble(tmp_path / "checkpoints" / "4")
  def refuse(source, target):
    raise PermissionError(errno.EACCES, "Permission denied", str(source))
  with monkeypatch.context() as patch:   # root, as tests often run, may rename anything
    patch.setattr(os, "rename", refuse)
    with pytest.raises(ValueError, match=r"checkpoints/4 is unreadable and could not be moved "
                                         r"aside to corrupt-4 \(Permission denied\); move or "
                                         r"delete it yourself"):
      train_and_evaluate(config(6), tmp_path)
  assert saved_steps(tmp_path) == [2, 4] and (tmp_path / "checkpoints" / "4" / "state").is_dir()


def test_saved_steps_carry_checksums_that_sha256sum_verifies(tmp_path):
  train_and_evaluate(tiny_config(total_steps=1), tmp_path)
  step_dir = tmp_path / "checkpoints" / "1"
  check = lambda: subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=step_dir,
                                 capture_output=True, text=True)
  assert check().returncode == 0
  summed = {line.split("  ", 1)[1] for line in (step_dir / "SHA256SUMS").read_text().splitlines()}
  assert {"config/metadata", "data/process_0-of-1.json"} <= summed
  assert any(name.startswith("state/ocdbt.process_0/d/") for name in summed)
  name = str(garble(step_dir).relative_to(step_dir))
  assert f"{name}: FAILED" in check().stdout
  with pytest.raises(checkpoint.Unreadable, match=rf"1 file differ.*: {name} changed"):
    checkpoint.Checkpoints(tmp_path, 1, create=False).verify(1)


def test_an_unreadable_newest_step_is_moved_aside_and_the_previous_one_resumed(tmp_path, capsys,
                                                                             trained_gpt):
  config = lambda total: tiny_config(total_steps=total, checkpoint_every=2)
  train_and_evaluate(config(6), tmp_path / "straight")
  run = tmp_path / "run"
  shutil.copytree(trained_gpt, run)   # config(4)'s run
  garble(run / "checkpoints" / "4")
  train_and_evaluate(config(6), run)
  out = capsys.readouterr().out
  assert "warning: checkpoint step 4 is unreadable (1 file differs from SHA256SUMS: state/" in out
  assert "moved corrupt-4 aside and resumed from step 2" in out
  assert (run / "checkpoints" / "corrupt-4" / "state").is_dir()   # kept, never deleted
  assert saved_steps(run) == [2, 4, 6] and losses(run) == losses(tmp_path / "straight")
  # An empty (half-deleted) step directory is handled the same way.
  (run / "checkpoints" / "7").mkdir()
  train_and_evaluate(config(8), run)
  assert saved_steps(run)[-1] == 8 and not (run / "checkpoints" / "7").exists()
  # So is a step without its SHA256SUMS (every step this code saves has one): its files could be
  # anything, so it is not read unchecked.
  (run / "checkpoints" / "8" / "SHA256SUMS").unlink()
  garble(run / "checkpoints" / "8")
  before, _ = losses(run), capsys.readouterr()
  train_and_evaluate(config(8), run)
  assert ("warning: checkpoint step 8 is unreadable (its SHA256SUMS is missing); moved corrupt-8 "
          "aside and resumed from step 6") in capsys.readouterr().out
  assert saved_steps(run)[-1] == 8 and losses(run) == before   # steps 7-8 again, bitwise
