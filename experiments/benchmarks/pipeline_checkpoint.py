"""Input pipeline and checkpointing against the training step, measured side by side in one run.

  .venv/bin/python experiments/benchmarks/pipeline_checkpoint.py [--smoke]
1. Pipeline: rows/s of `batching.train_iterator` alone (tokenize, pack or mask, batch; the real
   corpus and tokenizer) for gpt_tiny and bert_tiny, against the rows/s the jitted training step
   consumes at the same shapes (one CPU device). Target: the pipeline >= 10x the step.
2. Checkpoints: how long the training loop is blocked by an asynchronous save (`Checkpoints.save`
   returns while Orbax writes in the background) against a synchronous one (save + wait until
   committed, SHA256SUMS included), for a state of ~48 M parameters + Adam (~0.6 GB).
   Target: blocked <= 10% of the synchronous save.
3. Input shards: the time one process spends building a global batch of bert_tiny (NSP pairs and
   masks) when it builds all `input_shards`=8 streams (1 process) against only the one its
   devices hold rows of (each of 8 processes). Expected: ~1/8 of the time.
--smoke: tiny sizes and one repeat, seconds long (run by the tests so the script keeps working).
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))   # the repository root

import grain  # noqa: E402
import jax  # noqa: E402

from llm import checkpoint, cli, optim, parallel, state as state_lib, tasks  # noqa: E402
from llm.data import batching, corpora, tokenizer as tokenizer_lib  # noqa: E402
from llm.models import build_model  # noqa: E402
from llm.steps import jit_train_step, put_batch  # noqa: E402


def load_config(name, **overrides):
  config = cli.load_config(ROOT / "configs" / f"{name}.py", **overrides)
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  return config


def setup(config):
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  task = tasks.get_task(config.objective)
  model = build_model(config, task.heads(config))
  optimizer, schedule = optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  state = state_lib.init_state(model, optimizer, config, shardings)
  return mesh, task, model, optimizer, schedule, shardings, state


SMOKE = {"model.num_layers": 1, "model.embed_dim": 32, "model.num_heads": 2, "model.mlp_dim": 64,
         "seq_len": 32, "batch_size": 4}


def pipeline_vs_step(name, batches, steps, smoke):
  config = load_config(name, **(SMOKE if smoke else {}))
  mesh, task, model, optimizer, schedule, shardings, state = setup(config)
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  it = batching.train_iterator(config, task, tok, builder)
  next(it)   # threads started, first documents read
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  pipe_rows = batches * config.batch_size / (time.perf_counter() - start)
  rules = parallel.axis_rules(config)
  step = jit_train_step(model, task, optimizer, schedule, config, mesh, shardings)
  device_batch = put_batch(batch, mesh, rules)
  state, stats, _ = step(state, device_batch)   # compile
  jax.block_until_ready(stats)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, stats, _ = step(state, device_batch)
    jax.block_until_ready(stats)
    times.append(time.perf_counter() - start)
  step_rows = config.batch_size / statistics.median(times)
  return config, pipe_rows, step_rows


def shard_building(batches, smoke, shards=8):
  """(config, ms a process takes per global batch building every input shard, the same
  building only the first: the share of one of `shards` processes)."""
  config = load_config("bert_tiny", input_shards=shards,
                       **({**SMOKE, "batch_size": shards} if smoke else {"batch_size": 128}))
  task = tasks.get_task(config.objective)
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  ms = {}
  for name, rows in (("all", None), ("one", range(config.batch_size // shards))):
    it = batching.train_iterator(config, task, tok, builder, rows)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    ms[name] = (time.perf_counter() - start) / batches * 1e3
  return config, ms["all"], ms["one"]


def save_blocking(size, repeats):
  """(seconds an async save blocks, seconds a synchronous save takes, state bytes)."""
  layers, width = size
  config = load_config("gpt_tiny", **{"model.num_layers": layers, "model.embed_dim": width,
                                      "model.num_heads": max(width // 64, 1),
                                      "model.mlp_dim": 4 * width})
  _, _, _, _, _, _, state = setup(config)
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
  data = iter(grain.MapDataset.range(10).to_iter_dataset())
  tokenizer = {"path": "", "sha256": ""}   # what the save records of the run's tokenizer
  blocked, synchronous = [], []
  with tempfile.TemporaryDirectory() as tmp:
    checkpoints = checkpoint.Checkpoints(tmp, keep=2)
    for r in range(repeats):
      start = time.perf_counter()
      checkpoints.save(2 * r + 1, state, data, config, tokenizer)
      blocked.append(time.perf_counter() - start)
      checkpoints.wait()
      start = time.perf_counter()
      checkpoints.save(2 * r + 2, state, data, config, tokenizer)
      checkpoints.wait()
      synchronous.append(time.perf_counter() - start)
    checkpoints.close()
  return statistics.median(blocked), statistics.median(synchronous), nbytes


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds long")
  args = parser.parse_args()
  batches, steps, repeats = (2, 2, 1) if args.smoke else (30, 10, 3)
  size = (1, 32) if args.smoke else (8, 640)

  print("| config | batch x seq | pipeline rows/s | train step rows/s | pipeline / step |")
  print("|---|---|---|---|---|")
  for name in ("gpt_tiny", "bert_tiny"):
    config, pipe, step = pipeline_vs_step(name, batches, steps, args.smoke)
    print(f"| {name} | {config.batch_size} x {config.seq_len} | {pipe:,.0f} | {step:,.1f} | "
          f"{pipe / step:,.1f}x |", flush=True)

  config, every, one = shard_building(batches, args.smoke)
  print()
  print("| config | batch x seq | input shards | building all, ms/batch | building one, ms/batch "
        "| one / all |")
  print("|---|---|---|---|---|---|")
  print(f"| bert_tiny | {config.batch_size} x {config.seq_len} | {config.input_shards} | "
        f"{every:,.1f} | {one:,.1f} | {one / every:.1%} |", flush=True)

  blocked, sync, nbytes = save_blocking(size, repeats)
  print()
  print("| state | async save blocks the loop | synchronous save | blocked / synchronous |")
  print("|---|---|---|---|")
  print(f"| {nbytes / 2**20:,.0f} MiB | {blocked * 1e3:,.1f} ms | {sync * 1e3:,.1f} ms | "
        f"{blocked / sync:.1%} |", flush=True)


if __name__ == "__main__":
  main()
