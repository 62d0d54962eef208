"""LoRA: low-rank updates of chosen kernels, W + (alpha / rank) * A @ B, with W frozen.

The adapters live beside the weights they adapt: params["lora"] mirrors the param tree down to
each adapted kernel, holding {"a": (fan_in, rank), "b": (rank, fan_out)} (with a leading `layers`
axis for scanned layers: one adapter per layer). `merge` folds them into the kernels before the
model runs, so the network code knows nothing about LoRA. B starts at zero: a fresh adapter
leaves the pretrained model exactly as it was.
"""
import math
import re

import jax
import jax.numpy as jnp

from llm.optim import path_name


def _axes(path):
  """(leading layer axes, input axes) of a kernel: scanned kernels start with a `layers` axis;
  attention's output kernel is (heads, head_dim, embed), its input the first two axes."""
  return int("/layers/" in f"/{path}"), 2 if path.endswith("attention/out/kernel") else 1


def init_adapters(params, cfg, rng):
  """Adapters for every kernel whose path matches cfg.targets (a regex)."""
  pattern, adapters = re.compile(cfg.targets), {}
  leaves = jax.tree_util.tree_leaves_with_path(params)
  for i, (key_path, kernel) in enumerate(leaves):
    path = path_name(key_path)
    if not (path.endswith("kernel") and pattern.search(path)):
      continue
    lead, k = _axes(path)
    layers = kernel.shape[:lead]
    fan_in = math.prod(kernel.shape[lead:lead + k])
    fan_out = math.prod(kernel.shape[lead + k:])
    node = adapters
    for part in path.split("/")[:-1]:
      node = node.setdefault(part, {})
    a = jax.random.normal(jax.random.fold_in(rng, i), (*layers, fan_in, cfg.rank))
    node["kernel"] = {"a": a / math.sqrt(fan_in), "b": jnp.zeros((*layers, cfg.rank, fan_out))}
  if not adapters:
    raise ValueError(f"lora.targets={cfg.targets!r} matches no kernel; paths look like "
                     f"'encoder/layer_0/attention/query/kernel'")
  return adapters


def merge(params, cfg):
  """The params without "lora", each adapted kernel replaced by W + (alpha / rank) * A @ B."""
  if "lora" not in params:
    return params
  scale = cfg.alpha / cfg.rank

  def fold(base, adapters):
    out = dict(base)
    for key, sub in adapters.items():
      if key == "kernel":
        w = base["kernel"]
        # a @ b broadcasts over a leading layers axis, so scanned kernels merge the same way.
        out["kernel"] = w + (scale * (sub["a"] @ sub["b"])).reshape(w.shape).astype(w.dtype)
      else:
        out[key] = fold(base[key], sub)
    return out
  return fold({k: v for k, v in params.items() if k != "lora"}, params["lora"])
