"""The planner's library (python -m llm.plan is its command): the training step lowered and
compiled for a mesh of fake CPU devices, with the run's own shardings, and what XLA's memory and
cost analyses say of it; a roofline step time on a named chip."""
import jax
import numpy as np

from llm import config_checks, optim, parallel, runlog, state as state_lib, tasks
from llm.base_config import base_config
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.models import build_model, families, model_config
from llm.steps import jit_train_step

# Published dense bf16 peak (TFLOP/s), memory (GiB) and memory bandwidth (GB/s) per chip.
DEVICE_KINDS = {
    "v4": (275, 32, 1228), "v5e": (197, 16, 819), "v5p": (459, 95, 2765),
    "v6e": (918, 32, 1640), "a100": (312, 80, 2039), "h100": (989, 80, 3350),
    "h200": (989, 141, 4800),
}


def abstract_batch(config, task):
  """The global batch's shapes and dtypes, from one row the task builds from the corpus. Shapes
  do not depend on the vocabulary, so a paper-sized one the corpus cannot train (GPT-2's 50,304
  pieces) is planned with rows tokenized by the default vocabulary size."""
  config = config.copy_and_resolve_references()
  if config.tokenizer.kind == "sentencepiece" and not config.tokenizer.path:
    config.vocab_size = base_config().vocab_size
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  docs = corpora.documents(builder, "train")
  row = next(iter(task.make_rows(docs=docs, all_docs=docs, config=config, tok=tok, train=True,
                                 shard=0)))
  return {k: jax.ShapeDtypeStruct((config.batch_size, *np.shape(v)), np.asarray(v).dtype)
          for k, v in row.items()}


def formula_flops(config, params):
  """6 N tokens (N: weights in matmuls, embeddings excluded unless they are the output layer)
  + 12 L d seq tokens (attention scores and values, forward and backward)."""
  m = model_config(config)
  matmul = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = optim.path_name(path)
    if name.endswith("kernel") or (name == "token_embed/embedding" and m.tie_embeddings):
      matmul += int(np.prod(leaf.shape))
  layers = sum(families.stack_depths(m))
  tokens = config.batch_size * config.seq_len
  width = m.num_heads * (m.head_dim or m.embed_dim // m.num_heads)
  return 6 * matmul * tokens + 12 * layers * width * config.seq_len * tokens


def lower_train_step(config):
  """(the training step lowered for config's mesh, its abstract state, the mesh): traced on
  abstract state and batch, so no array is allocated."""
  mesh = parallel.make_mesh(config.mesh)
  task = tasks.get_task(config.objective)
  model = build_model(config, task.heads(config))
  optimizer, schedule = optim.make_optimizer(config)
  abstract_state, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  rules = parallel.axis_rules(config)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                   sharding=parallel.batch_sharding(mesh, rules, len(v.shape)))
           for k, v in abstract_batch(config, task).items()}
  step = jit_train_step(model, task, optimizer, schedule, config, mesh, shardings)
  return step.lower(abstract_state, batch), abstract_state, mesh


def plan(config, devices, device_kind):
  if devices is None or devices < 1:
    raise ValueError("--devices=N (how many chips the run would use) is required and must be "
                     "positive")
  if device_kind and device_kind not in DEVICE_KINDS:
    raise ValueError(f"--device_kind={device_kind!r}: expected one of {sorted(DEVICE_KINDS)}")
  if jax.device_count() != devices:
    raise ValueError(f"the planner sees {jax.device_count()} devices, not --devices={devices}: "
                     f"run it as python -m llm.plan (it sets up the fake devices itself)")
  config_checks.resolve_config(config, devices)
  lowered, abstract_state, mesh = lower_train_step(config)
  runlog.log(f"compiling the train step for {devices} devices, mesh {dict(mesh.shape)} ...")
  compiled = lowered.compile()
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost

  def shard_bytes(tree):
    """Bytes of one device's shards (device 0's; the rules shard evenly)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
      shape = leaf.sharding.shard_shape(leaf.shape)
      total += int(np.prod(shape)) * np.dtype(leaf.dtype).itemsize
    return total

  params = abstract_state["params"]
  result = {
      "devices": devices, "mesh": dict(mesh.shape),
      "parameters": state_lib.count_params(params),
      "param_bytes_per_device": shard_bytes(params),
      "optimizer_bytes_per_device": shard_bytes(abstract_state["opt_state"]),
      "argument_bytes_per_device": int(memory.argument_size_in_bytes),
      "temp_bytes_per_device": int(memory.temp_size_in_bytes),
      "output_bytes_per_device": int(memory.output_size_in_bytes - memory.alias_size_in_bytes),
      "flops_per_step": float(cost.get("flops", 0.0)) * devices,
      "formula_flops_per_step": float(formula_flops(config, params)),
      "bytes_accessed_per_device": float(cost.get("bytes accessed", 0.0)),
      "tokens_per_step": config.batch_size * config.seq_len,
  }
  result["peak_bytes_per_device"] = (result["argument_bytes_per_device"] +
                                     result["temp_bytes_per_device"] +
                                     result["output_bytes_per_device"])
  if device_kind:
    peak, memory_gib, bandwidth = DEVICE_KINDS[device_kind]
    compute = result["flops_per_step"] / devices / (peak * 1e12)
    # The least a step moves through memory: params read twice (forward, backward) and written
    # once, gradients written and read, optimizer state read and written. (XLA's CPU "bytes
    # accessed" counts unfused traffic, far more than a TPU or GPU program moves.)
    traffic = (5 * result["param_bytes_per_device"] +
               2 * result["optimizer_bytes_per_device"]) / (bandwidth * 1e9)
    result.update({
        "device_kind": device_kind, "device_memory_bytes": memory_gib * 2**30,
        "fits": result["peak_bytes_per_device"] <= memory_gib * 2**30,
        "step_seconds_at_peak": max(compute, traffic),
        "mfu_bound": compute / max(compute, traffic) if compute else 0.0})
    result["tokens_per_sec_at_peak"] = result["tokens_per_step"] / result["step_seconds_at_peak"]
  return result
