"""Weights between our params and other formats, and between our two layer layouts.

A format is described by a name map: one `Rule` per tensor, our param path (unscanned layout,
e.g. `encoder/layer_0/attention/query/kernel`) beside the other format's tensor name, with the
reshape/transpose each way. `import_tensors` and `export_params` apply a map in either direction,
so a format's module (hf_bert.py, ...) holds only its map and its config translation.
"""
import dataclasses
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

LAYER_KEY = re.compile(r"^layer_(\d+)$")


@dataclasses.dataclass(frozen=True)
class Rule:
  ours: str                     # our param path in the unscanned layout
  theirs: str                   # the tensor's name in the other format
  to_ours: Callable = np.asarray     # their array -> ours
  to_theirs: Callable = np.asarray   # our array -> theirs
  optional: bool = False        # a head or extra the other side may lack


def flatten(params, prefix=""):
  """{'a/b/c': array} for a nested dict of arrays."""
  out = {}
  for key, value in params.items():
    path = f"{prefix}/{key}" if prefix else key
    if isinstance(value, dict):
      out.update(flatten(value, path))
    else:
      out[path] = value
  return out


def nest(flat):
  """The nested dict of a {'a/b/c': array} mapping."""
  out = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = out
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return out


def import_tensors(tensors, rules, source):
  """Our nested float32 params from {their name: array}; raises ValueError naming the first
  required tensor `source` lacks."""
  flat = {}
  for rule in rules:
    if rule.theirs not in tensors:
      if rule.optional:
        continue
      raise ValueError(f"{source} has no tensor {rule.theirs!r} (for our {rule.ours})")
    flat[rule.ours] = np.asarray(rule.to_ours(np.asarray(tensors[rule.theirs])), np.float32)
  return nest(flat)


def export_params(params, rules):
  """{their name: float32 array} for every rule whose param `params` has (unscanned layout)."""
  flat = flatten(to_layout(params, scan=False))
  return {rule.theirs: np.ascontiguousarray(rule.to_theirs(np.asarray(flat[rule.ours])),
                                            np.float32)
          for rule in rules if rule.ours in flat}


def layout_of(params):
  """True if `params` hold scanned layers (a `layers` node), False if `layer_i` nodes, else None."""
  for path in flatten(params):
    parts = path.split("/")
    if "layers" in parts:
      return True
    if any(LAYER_KEY.match(p) for p in parts):
      return False
  return None


def to_layout(tree, scan):
  """`tree` with its layers stacked into one `layers` node (scan=True), or split into `layer_0`,
  `layer_1`, ... (scan=False). Works on any pytree that mirrors the params (params, Adam moments,
  LoRA adapters): dicts, lists, tuples and named tuples are walked, other nodes kept."""
  if isinstance(tree, dict):
    layer_keys = sorted((k for k in tree if LAYER_KEY.match(str(k))),
                        key=lambda k: int(LAYER_KEY.match(k).group(1)))
    out = {k: to_layout(v, scan) for k, v in tree.items()
           if not (scan and k in layer_keys) and not (not scan and k == "layers")}
    if scan and layer_keys:
      out["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                   *[to_layout(tree[k], scan) for k in layer_keys])
    if not scan and "layers" in tree:
      stacked = to_layout(tree["layers"], scan)
      count = jax.tree.leaves(stacked)[0].shape[0]
      for i in range(count):
        out[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return out
  if isinstance(tree, tuple) and hasattr(tree, "_fields"):   # a named tuple (optax states)
    return type(tree)(*(to_layout(v, scan) for v in tree))
  if isinstance(tree, (list, tuple)):
    return type(tree)(to_layout(v, scan) for v in tree)
  return tree
