"""Compile time and step time of a jitted AdamW training step against depth, with and without
scanned layers; and peak temporary memory of a GPT-2-small-shaped step per remat policy.

  .venv/bin/python experiments/benchmarks/compile_depth.py
Shapes: the depth sweep is gpt_tiny's width (d 256, 4 heads, MLP 1024, vocab 8000, seq 128,
batch 8); the remat table is GPT-2 small (12 layers, d 768, seq 1024, batch 4, vocab 50304),
compiled only: XLA's memory analysis of the compiled step (temporaries = activations + workspace).
"""
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))   # the repository root

import jax
import numpy as np

from llm import cli, optim, parallel, state as state_lib
from llm.models import build_model
from llm.tasks import causal_lm
from llm.steps import jit_train_step

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_config(arg=None, **overrides):
  config = cli.load_config(ROOT / "configs" / "gpt_tiny.py", arg, **overrides)
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  return config


def compiled_step(config):
  """(compile seconds, compiled step, state, batch) for config's training step on one device."""
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  model = build_model(config, ("lm",))
  optimizer, schedule = optim.make_optimizer(config)
  abstract, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  step = jit_train_step(model, causal_lm.TASK, optimizer, schedule, config, mesh, shardings)
  shape = (config.batch_size, config.seq_len)
  rng = np.random.default_rng(0)
  batch = {"inputs": rng.integers(4, config.vocab_size, shape).astype(np.int32),
           "targets": rng.integers(4, config.vocab_size, shape).astype(np.int32),
           "segment_ids": np.ones(shape, np.int32),
           "positions": np.broadcast_to(np.arange(config.seq_len, dtype=np.int32), shape)}
  batch_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
  start = time.perf_counter()
  compiled = step.lower(abstract, batch_abstract).compile()
  return time.perf_counter() - start, compiled, (model, optimizer, shardings), batch


def step_seconds(compiled, parts, config, batch, repeats=5):
  model, optimizer, shardings = parts
  state = state_lib.init_state(model, optimizer, config, shardings)
  times = []
  for _ in range(repeats + 1):
    start = time.perf_counter()
    state, stats, _ = compiled(state, batch)
    jax.block_until_ready(stats)
    times.append(time.perf_counter() - start)
  return statistics.median(times[1:])


def main():
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {jax.device_count()} device(s)")
  print("\n| layers | scan | compile s | step ms | compile / 2-layer compile (same layout) |")
  print("|---|---|---|---|---|")
  base = {}
  for scan in (False, True):
    for layers in (2, 12, 24):
      config = load_config(**{"model.num_layers": layers, "model.scan_layers": scan,
                              "batch_size": 8, "model.dropout_rate": 0.0})
      seconds, compiled, parts, batch = compiled_step(config)
      base.setdefault(scan, seconds)
      ms = 1e3 * step_seconds(compiled, parts, config, batch)
      print(f"| {layers} | {scan} | {seconds:.2f} | {ms:.0f} | {seconds / base[scan]:.2f}x |",
            flush=True)

  print("\n| remat (GPT-2 small step, scanned) | temporaries MiB | arguments MiB | compile s |")
  print("|---|---|---|---|")
  for remat in ("none", "dots_saveable", "dots_with_no_batch_dims_saveable", "full"):
    config = load_config("size=small", **{"model.scan_layers": True, "model.remat": remat,
                                          "batch_size": 4, "model.dropout_rate": 0.0})
    seconds, compiled, _, _ = compiled_step(config)
    memory = compiled.memory_analysis()
    print(f"| {remat} | {memory.temp_size_in_bytes / 2**20:,.0f} | "
          f"{memory.argument_size_in_bytes / 2**20:,.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
  main()
