"""Test setup: 8 fake CPU devices (set before JAX is imported) and the fixtures; what tests
share is in helpers.py."""
import os

from helpers import run_cli, tiny_config, xla_flags


# Once: pytest-xdist workers inherit the flags from the controller, and a repeated flag would
# change the compilation cache's key (no hits on what the CLI subprocesses compiled).
if xla_flags(8) not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags(8)).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent compilation cache for the session, shared with the CLI subprocesses: many
# tests train the same tiny model twice (resume, mesh, layout tests), and XLA compiles are most
# of their time here (test_train -k "stop_and_resume or another_mesh": 84 s without, 48 s with).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="llm-tests-jax-cache-")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402


@pytest.fixture
def cli():
  return run_cli


def built_once(tmp_path_factory, name, build):
  """<shared>/NAME/run, made by build(path) once per test run: the first pytest-xdist worker that
  asks builds it while the others wait, then all read it (a file lock in the workers' common
  directory)."""
  import fcntl
  import shutil
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent
  workdir = root / name / "run"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (root / name / "built").exists():
      shutil.rmtree(workdir.parent, ignore_errors=True)   # what a failed build left
      workdir.parent.mkdir()
      build(workdir)
      (root / name / "built").touch()
  return workdir


@pytest.fixture(scope="session")
def trained_gpt(tmp_path_factory):
  """A gpt_tiny run at TINY size (tiny_config), trained once per test run: 4 steps,
  checkpoints at steps 2 and 4. Tests read it as it is or copy it (shutil.copytree) first."""
  from llm.training import train_and_evaluate
  return built_once(tmp_path_factory, "trained_gpt", lambda workdir: train_and_evaluate(
      tiny_config(total_steps=4, checkpoint_every=2), workdir))


@pytest.fixture(scope="session")
def trained_bert(tmp_path_factory):
  """A bert_tiny run at TINY size with rows of 64 and scanned layers, 2 steps, trained once per
  test run: what init= tests start from and export tests export (read-only)."""
  from llm.training import train_and_evaluate
  return built_once(tmp_path_factory, "trained_bert", lambda workdir: train_and_evaluate(
      tiny_config("bert_tiny", total_steps=2, seq_len=64, **{
          "model.max_len": 64, "model.scan_layers": True}), workdir))


# The files that take longest, longest first (seconds of test time in `bash scripts/test.sh
# --durations=0`): pytest-xdist (--dist loadfile) hands whole files to its workers in collection
# order, so these start first and the short files fill in at the end. By default it would order
# files by their number of tests, which puts these few-test files last, one worker running them
# alone while the other idles.
LONGEST_FIRST = ("test_multiprocess.py", "test_faults.py", "test_train.py", "test_sweep.py",
                 "test_smollm2.py", "test_finetune.py", "test_cli.py", "test_benchmarks.py",
                 "test_seq2seq.py", "test_decoding.py", "test_layers.py", "test_hf.py")


def pytest_configure(config):
  config.addinivalue_line("markers", "fault: fault injection and bad input (pytest -m fault)")
  if hasattr(config.option, "loadscopereorder"):   # pytest-xdist: keep the order below (always)
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: the rest in order
