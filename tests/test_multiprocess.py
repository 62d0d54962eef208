"""Real multi-process runs on this machine: processes on 127.0.0.1 talking through CPU
collectives (gloo), 4 fake devices each. They must train exactly like one process on 8 devices,
resume each other's checkpoints, and stop within a bounded time when a peer dies."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from llm import checksums

from llm.evaluation import evaluate_checkpoint
from llm.training import train_and_evaluate

from helpers import (ROOT, TINY, config_flags, garble, load_config, losses, run_cli, tiny_overrides,
                     xla_flags)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(config, workdir, *args, processes=2, env=None, module="train", env_of=None):
  """`processes` llm.<module> processes of one --distributed run (not yet waited for); env_of:
  {process index: more environment variables for that one}."""
  port = free_port()
  procs = []
  for index in range(processes):
    full_env = {**os.environ, "XLA_FLAGS": xla_flags(8 // processes),
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(index),
                "LLM_HEARTBEAT_TIMEOUT": "10", **(env or {}), **(env_of or {}).get(index, {})}
    procs.append(subprocess.Popen(
        [sys.executable, "-m", f"llm.{module}", "--distributed", f"--config={config}",
         f"--workdir={workdir}", *args], cwd=ROOT, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  return procs


def run_distributed(config, workdir, *args, **kwargs):
  procs = start(config, workdir, *args, **kwargs)
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    # Neither Gloo's connection banner nor absl's info lines (jax.distributed's start-up).
    noise = [line for line in (out + err).splitlines()
             if line.startswith("[Gloo]") or re.match(r"I\d{4} ", line)]
    assert not noise, noise
  for out, _ in outs[1:]:   # the first process reports for all
    assert not out.strip(), out[-2000:]
  return outs


# GPT with 2 input shards, 4 steps, checkpoints at steps 2 and 4: as flags, and as in-process
# overrides of the same run.
GPT = {**TINY, "total_steps": 4, "checkpoint_every": 2, "eval_batches": 1, "input_shards": 2}
ARGS = config_flags(GPT)


@pytest.fixture(scope="module")
def gpt_one(tmp_path_factory):
  """The GPT run on 1 process x 8 devices (this one), which builds both input shards."""
  workdir = tmp_path_factory.mktemp("gpt_one") / "run"
  train_and_evaluate(load_config("gpt_tiny", **GPT), workdir)
  return workdir


def test_two_processes_train_and_resume_like_one(tmp_path, gpt_one):
  """GPT, 2 input shards: 2 processes x 4 devices, each building only its shard of the batch,
  give the losses of 1 process x 8 devices building both, a checkpoint of either resumes
  exactly in the other (each process saved its shard's position), and both agree to skip a
  corrupt one, also one that only one process cannot read."""
  config = "configs/gpt_tiny.py"
  shutil.copytree(gpt_one, tmp_path / "one")
  expected = losses(tmp_path / "one")
  assert sorted(expected) == [1, 2, 3, 4]

  # 2 processes stop after step 2 (as a preempted job would); 1 process resumes to step 4.
  run_distributed(config, tmp_path / "two_one", *ARGS, "--config.stop_at_step=2")
  assert (tmp_path / "two_one" / "checkpoints" / "2").is_dir()
  train_and_evaluate(load_config("gpt_tiny", **GPT), tmp_path / "two_one")   # 1 process x 8
  # The 1-process run's step 4 goes bad on disk; 2 processes find it out (process 0 checks the
  # SHA256SUMS and tells process 1), move it aside and resume from step 2.
  shutil.copytree(tmp_path / "one", tmp_path / "one_two")
  garble(tmp_path / "one_two" / "checkpoints" / "4")
  (out, _), _ = run_distributed(config, tmp_path / "one_two", *ARGS)
  assert "moved corrupt-4 aside and resumed from step 2" in out, out[-2000:]
  for run in ("two_one", "one_two"):
    got = losses(tmp_path / run)
    assert sorted(got) == [1, 2, 3, 4]
    np.testing.assert_allclose([got[s] for s in range(1, 5)],
                               [expected[s] for s in range(1, 5)], rtol=2e-6, err_msg=run)

  # Step 4, which the 2 processes just saved, gets a garbled data position (checksummed as if
  # written so) that only process 1 reads: process 0 reads the step fine, yet both give it up
  # together, move it aside and resume from step 2, finishing with the same losses.
  step = tmp_path / "one_two" / "checkpoints" / "4"
  (step / "data" / "process_1-of-2.json").write_text("{not json")
  checksums.write(step)
  (out, _), _ = run_distributed(config, tmp_path / "one_two", *ARGS)
  assert ("warning: checkpoint step 4 is unreadable (process 1: data/process_1-of-2.json is "
          "unreadable (JSONDecodeError: ") in out, out[-2000:]
  # The first corrupt step 4 is still there, kept: this one is set aside next to it.
  assert "moved corrupt-4.1 aside and resumed from step 2" in out, out[-2000:]
  got = losses(tmp_path / "one_two")
  assert sorted(got) == [1, 2, 3, 4]
  np.testing.assert_allclose([got[s] for s in got], [expected[s] for s in got], rtol=2e-6)


def test_two_processes_train_bert_like_one(tmp_path):
  """BERT (MLM + NSP, dynamic masks, 4 input shards): the masks, and so the losses and the
  evaluation, do not depend on the number of processes; each process builds and saves only its
  two shards."""
  config = "configs/bert_tiny.py"
  bert = {**TINY, "total_steps": 3, "eval_batches": 1, "input_shards": 4, "masking": "dynamic"}
  args = config_flags(bert)
  train_and_evaluate(load_config("bert_tiny", **bert), tmp_path / "one")   # 1 process x 8
  # Through the launcher, as a user would start it.
  proc = subprocess.run(["bash", "launch/local.sh", "--processes=2", "--devices=4", config,
                         str(tmp_path / "two"), *args], cwd=ROOT, text=True, capture_output=True,
                        timeout=600, env={**os.environ, "PYTHON": sys.executable,
                                          "LLM_PORT": str(free_port())})
  logs = "".join((tmp_path / "two" / f"process_{i}.log").read_text()[-2000:] for i in (0, 1))
  assert proc.returncode == 0, proc.stderr[-2000:] + logs
  expected, got = losses(tmp_path / "one"), losses(tmp_path / "two")
  assert sorted(got) == sorted(expected) == [1, 2, 3]
  np.testing.assert_allclose([got[s] for s in got], [expected[s] for s in got], rtol=2e-6)
  # Evaluation reads the validation split as 4 shards too, each process building its two.
  last = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1])
          for run in ("one", "two")]
  assert "eval/mlm_loss" in last[0]
  for key in (k for k in last[0] if k.startswith("eval/")):
    assert last[1][key] == pytest.approx(last[0][key], rel=1e-5), key
  data = tmp_path / "two" / "checkpoints" / "3" / "data"
  assert [sorted(json.loads((data / f"process_{i}-of-2.json").read_text())["shards"])
          for i in (0, 1)] == [["0", "1"], ["2", "3"]]


def test_two_processes_decode_a_generative_evaluation_like_one(tmp_path):
  """Summarization (tiny T5, beam search): the evaluation that decodes validation inputs with
  the KV-cache engine scores the same in training on 2 processes x 4 devices as llm.evaluate on
  1 x 8, and llm.evaluate's predictions file is the same text for text on both."""
  config = "configs/summarize.py"
  summarize = {**TINY, "total_steps": 2, "seq_len": 256, "batch_size": 8, "eval_batches": 1,
               "model.num_decoder_layers": 2, "model.head_dim": 16, "seq2seq.target_len": 24,
               "decode.max_new_tokens": 6, "decode.num_beams": 2, "decode.batch_size": 8,
               "decode.max_examples": 8}
  args = config_flags(summarize)
  (out, _), _ = run_distributed(config, tmp_path, *args)
  # One input shard: each process builds the whole batch, and is told so.
  assert "input_shards=1 this process builds 8 rows of every batch of 8 and trains on 4" in out
  last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
  scores = {k.removeprefix("eval/"): v for k, v in last.items() if k.startswith("eval/")}
  assert {"rouge1", "bleu", "loss"} <= set(scores)
  predictions = []
  for processes in (1, 2):
    if processes == 1:   # llm.evaluate's function, in this process (8 devices)
      evaluate_checkpoint(load_config("summarize", **summarize), tmp_path)
      result = json.loads((tmp_path / "evaluate.json").read_text())
      for key, value in scores.items():
        assert result[key] == pytest.approx(value, rel=1e-5), key
    else:
      run_distributed(config, tmp_path, *args, module="evaluate")
    lines = (tmp_path / "predictions_validation.jsonl").read_text().splitlines()
    predictions.append([json.loads(line)["prediction"] for line in lines])
  assert len(predictions[0]) == 8 and len(set(predictions[0])) > 1   # not one constant text
  assert predictions[1] == predictions[0]


INJECT = """
import os
if os.environ.get("FAIL_TO_RESTORE_STEP"):   # this process's Orbax cannot read that step's state
  import orbax.checkpoint as ocp
  real = ocp.CheckpointManager.restore
  def restore(self, step, *args, **kwargs):
    items = kwargs.get("args", args[0] if args else None)
    if step == int(os.environ["FAIL_TO_RESTORE_STEP"]) and "state" in items.keys():
      raise OSError("injected read failure")
    return real(self, step, *args, **kwargs)
  ocp.CheckpointManager.restore = restore
"""


@pytest.mark.fault
def test_a_step_orbax_cannot_read_on_one_process_stops_the_run_and_loses_nothing(tmp_path,
                                                                                gpt_one):
  """Step 4's files are sound (checksums match) but process 1's read fails inside Orbax, where
  process 0 reads it and waits in Orbax's closing collective: process 1 stops with one line
  naming the step and the cause, process 0 is stopped in bounded time, nothing is moved aside.
  When every process fails to read it, they give it up together, as one process does."""
  (tmp_path / "inject").mkdir()
  (tmp_path / "inject" / "sitecustomize.py").write_text(INJECT)
  fail = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "inject"),
                                                      os.environ.get("PYTHONPATH")])),
          "FAIL_TO_RESTORE_STEP": "4"}
  config, workdir = "configs/gpt_tiny.py", tmp_path / "run"
  shutil.copytree(gpt_one, workdir)   # one process wrote steps 2 and 4
  more = ("--config.total_steps=5",)
  started = time.time()
  procs = start(config, workdir, *ARGS, *more, env_of={1: fail})
  outs = [p.communicate(timeout=300) for p in procs]
  assert time.time() - started < 150, "the run took too long to stop"
  assert [p.returncode != 0 for p in procs] == [True, True], outs
  assert (f"error: checkpoint {workdir / 'checkpoints' / '4'} could not be restored on process 1 "
          "(OSError: injected read failure), and not alike on every process: process 0 did not "
          "report failing to read it within 10 s; nothing was moved or deleted") in outs[1][1], (
      outs[1][1][-2000:])
  assert "resumed from" not in outs[0][0] + outs[1][0]   # neither went back to step 2 alone
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]

  (out, _), _ = run_distributed(config, workdir, *ARGS, *more, env_of={0: fail, 1: fail})
  assert ("warning: checkpoint step 4 is unreadable (process 0: OSError: injected read "
          "failure)") in out, out[-2000:]
  assert "moved corrupt-4 aside and resumed from step 2" in out, out[-2000:]
  assert sorted(losses(workdir)) == [1, 2, 3, 4, 5]


@pytest.mark.fault
def test_a_dead_peer_stops_the_other_process_in_bounded_time(tmp_path):
  procs = start("configs/gpt_tiny.py", tmp_path, *tiny_overrides(total_steps=100000))
  deadline = time.time() + 300
  while not (tmp_path / "metrics.jsonl").exists() or len(
      (tmp_path / "metrics.jsonl").read_text().splitlines()) < 3:
    assert time.time() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-3000:]
    time.sleep(0.5)
  procs[1].kill()   # SIGKILL: no chance to say goodbye
  killed = time.time()
  _, err = procs[0].communicate(timeout=120)
  assert procs[0].returncode != 0
  assert time.time() - killed < 90, "the surviving process took too long to notice"
  procs[1].communicate()


@pytest.mark.fault
@pytest.mark.parametrize("env,message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "JAX_PROCESS_ID=2 is out of range for JAX_NUM_PROCESSES=2"),
    ({"JAX_NUM_PROCESSES": "", "JAX_PROCESS_ID": "0"}, "also needs JAX_NUM_PROCESSES"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", "LLM_DISTRIBUTED_TIMEOUT": "3"},
     "could not reach the coordinator at 127.0.0.1:"),
])
def test_bad_distributed_settings_are_one_line(tmp_path, env, message):
  env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", **env}
  proc = run_cli("train", "configs/gpt_tiny.py", tmp_path, "--distributed", *tiny_overrides(),
                 env=env, devices=1)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
