"""Test setup: 8 fake CPU devices (set before JAX is imported) and shared helpers."""
import os


def xla_flags(devices):
  """XLA_FLAGS of every test process, in-process and CLI alike: `devices` fake CPU devices, and
  XLA's backend optimisations off. Tests compile far more than they compute (3-5 s per jitted
  function even for a 2-layer model), and level 0 compiles about a third faster; every process
  uses the same level so that in-process and CLI results stay comparable to the last bit."""
  return f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"


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

import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_overrides(**extra):
  """Command-line overrides that make any config small enough for a test."""
  values = {"model.num_layers": 2, "model.embed_dim": 64, "model.num_heads": 4,
            "model.mlp_dim": 128, "seq_len": 32, "batch_size": 16, "log_every": 1,
            "eval_batches": 2, "eval_every": 0, "checkpoint_every": 0, **extra}
  return [f"--config.{k}={v}" for k, v in values.items()]


def run_cli(module, config, workdir, *args, env=None, launcher=(), devices=8):
  """Runs `python -m llm.<module>` like a user would (through `launcher`, a command prefix, if
  given) on `devices` fake CPU devices; returns the CompletedProcess. Tests that are not about
  sharding use devices=1: on two cores, eight devices make a 22M-parameter step 2.5x slower."""
  cmd = [*launcher, sys.executable, "-m", f"llm.{module}", f"--config={config}",
         f"--workdir={workdir}", *args]
  full_env = {**os.environ, "XLA_FLAGS": xla_flags(devices),
              **(env or {})}
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=full_env,
                        timeout=600)


def garble(step_dir):
  """Overwrites 8 bytes in the middle of the largest array data file, as a bad disk would:
  a change Orbax itself reads back without noticing."""
  path = max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  data = bytearray(path.read_bytes())
  data[len(data) // 2:len(data) // 2 + 8] = bytes(255 - b for b in data[len(data) // 2:
                                                                        len(data) // 2 + 8])
  path.write_bytes(bytes(data))
  return path


@pytest.fixture
def cli():
  return run_cli


def pytest_configure(config):
  config.addinivalue_line("markers", "fault: fault injection and bad input (pytest -m fault)")
