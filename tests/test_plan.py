"""llm.plan against an actual compile: on 8 fake devices the planner's figures are those of the
train step this process builds, initialises and compiles itself; larger meshes shard as asked;
bad meshes and chips are one line."""
import json
import subprocess
import sys

import jax
import pytest

from llm import config_checks, optim, parallel, state as state_lib, tasks
from llm.data import batching, corpora, tokenizer as tokenizer_lib
from llm.models import build_model
from llm.steps import jit_train_step, put_batch

from helpers import ROOT, config_flags, load_config

SHAPE = {"model.num_layers": 2, "model.embed_dim": 64, "model.num_heads": 4,
         "model.mlp_dim": 128, "seq_len": 32, "batch_size": 16}


def run_plan(*args, devices, shape=SHAPE):
  cmd = [sys.executable, "-m", "llm.plan", "--config=configs/gpt_tiny.py", f"--devices={devices}",
         *config_flags(shape), *args]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def planned(*args, devices):
  proc = run_plan("--format=json", *args, devices=devices)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_plan_equals_the_step_this_process_compiles():
  plan = planned("--config.mesh.fsdp=2", "--device_kind=v5e", devices=8)
  config = load_config("gpt_tiny.py")
  config.update_from_flattened_dict({**SHAPE, "mesh.fsdp": 2})
  config_checks.resolve_config(config, 8)
  mesh = parallel.make_mesh(config.mesh)
  task = tasks.get_task(config.objective)
  model = build_model(config, task.heads(config))
  optimizer, schedule = optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  state = state_lib.init_state(model, optimizer, config, shardings)
  # Bytes device 0 really holds, from the initialised arrays.
  held = lambda tree: sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(tree))
  assert plan["parameters"] == state_lib.count_params(state["params"])
  assert plan["param_bytes_per_device"] == held(state["params"])
  assert plan["optimizer_bytes_per_device"] == held(state["opt_state"])
  builder = corpora.prepare_corpus(config)
  batch = next(batching.train_iterator(config, task, tokenizer_lib.load_tokenizer(config, builder),
                                       builder))
  step = jit_train_step(model, task, optimizer, schedule, config, mesh, shardings)
  compiled = step.lower(state, put_batch(batch, mesh, parallel.axis_rules(config))).compile()
  memory = compiled.memory_analysis()
  assert plan["argument_bytes_per_device"] == memory.argument_size_in_bytes
  assert plan["temp_bytes_per_device"] == memory.temp_size_in_bytes
  flops = compiled.cost_analysis()
  flops = (flops[0] if isinstance(flops, (list, tuple)) else flops)["flops"]
  assert plan["flops_per_step"] == pytest.approx(flops * 8)
  # The textbook formula agrees with XLA's count to within 10%.
  assert plan["formula_flops_per_step"] == pytest.approx(plan["flops_per_step"], rel=0.1)
  assert plan["fits"] and 0 < plan["mfu_bound"] <= 1
  assert plan["step_seconds_at_peak"] >= plan["flops_per_step"] / 8 / 197e12


def test_a_mesh_larger_than_this_machine_shards_as_asked():
  small = planned("--config.mesh.fsdp=2", "--config.batch_size=64", devices=8)
  big = planned("--config.mesh.fsdp=8", "--config.batch_size=64", devices=64)
  assert big["mesh"] == {"data": 8, "fsdp": 8, "tensor": 1}
  assert big["parameters"] == small["parameters"]
  # fsdp 8 instead of 2: the sharded kernels and embeddings take a quarter of the room.
  assert big["param_bytes_per_device"] < small["param_bytes_per_device"] / 3
  assert big["flops_per_step"] == pytest.approx(small["flops_per_step"], rel=0.05)


@pytest.mark.fault
@pytest.mark.parametrize("args,devices,message", [
    (["--config.mesh.tensor=3", "--config.mesh.data=2"], 6, "cannot be split 3 ways"),
    (["--config.mesh.data=16"], 8, "must equal the 8 available devices"),
    (["--device_kind=v9"], 8, "--device_kind='v9': expected one of"),
    ([], 100000, "error: --devices=100000: the planner compiles for that many fake CPU devices "
                 "and plans at most 4096"),
])
def test_bad_plans_are_one_line(args, devices, message):
  proc = run_plan(*args, devices=devices)
  assert proc.returncode != 0
  assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
