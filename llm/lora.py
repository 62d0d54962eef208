"""LoRA: low-rank updates of chosen kernels, W + (alpha / rank) * A @ B, with W frozen.

The adapters live beside the weights they adapt: params["lora"] mirrors the param tree down to
each adapted kernel, holding {"a": (fan_in, rank), "b": (rank, fan_out)}. `merge` folds them into
the kernels before the model runs, so the network code knows nothing about LoRA. B starts at
zero: a fresh adapter leaves the pretrained model exactly as it was.
"""
import math
import re

import jax
import jax.numpy as jnp

from llm.optim import path_name


def _fan_in_dims(path):
  # Attention's output kernel is (heads, head_dim, embed): its input is the first two axes.
  return 2 if path.endswith("attention/out/kernel") else 1


def init_adapters(params, cfg, rng):
  """Adapters for every kernel whose path matches cfg.targets (a regex)."""
  pattern, adapters = re.compile(cfg.targets), {}
  leaves = jax.tree_util.tree_leaves_with_path(params)
  for i, (key_path, kernel) in enumerate(leaves):
    path = path_name(key_path)
    if not (path.endswith("kernel") and pattern.search(path)):
      continue
    k = _fan_in_dims(path)
    fan_in, fan_out = math.prod(kernel.shape[:k]), math.prod(kernel.shape[k:])
    node = adapters
    for part in path.split("/")[:-1]:
      node = node.setdefault(part, {})
    node["kernel"] = {
        "a": jax.random.normal(jax.random.fold_in(rng, i), (fan_in, cfg.rank)) / math.sqrt(fan_in),
        "b": jnp.zeros((cfg.rank, fan_out))}
  if not adapters:
    raise ValueError(f"lora.targets={cfg.targets!r} matches no kernel; paths look like "
                     f"'layer_0/attention/query/kernel'")
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
        out["kernel"] = w + (scale * (sub["a"] @ sub["b"])).reshape(w.shape).astype(w.dtype)
      else:
        out[key] = fold(base[key], sub)
    return out
  return fold({k: v for k, v in params.items() if k != "lora"}, params["lora"])
