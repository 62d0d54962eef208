"""The train state (params, optimizer state, step, rng) and its shardings, built from the config.

Shardings come from `jax.eval_shape` of the initialiser (no parameter is materialised) and the
logical axis names each parameter carries; the real initialisation then runs under jit with those
output shardings, so every device only ever holds its own shards.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm import lora, optim, parallel
from llm.models import families


def _boxed_params(model, config, rng):
  """Params (LoRA adapters included) still in their LogicallyPartitioned boxes."""
  params_rng, dropout_rng = jax.random.split(rng)
  batch = families.example_batch(config.model, 1, config.seq_len)
  variables = model.init({"params": params_rng, "dropout": dropout_rng}, batch)
  params = variables["params"]
  if config.lora.rank > 0:   # small and replicated: the adapters carry no logical axis names
    params = dict(params, lora=lora.init_adapters(nn.unbox(params), config.lora,
                                                  jax.random.fold_in(rng, 2)))
  return params


def abstract_params(model, config, mesh):
  """Shapes, dtypes and shardings on `mesh` of the model's params, without materialising any."""
  boxed = jax.eval_shape(lambda r: _boxed_params(model, config, r), jax.random.PRNGKey(0))
  shardings = parallel.logical_to_sharding(parallel.logical_specs(boxed), mesh,
                                           parallel.axis_rules(config))
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      nn.unbox(boxed), shardings)


def _boxed_state(model, optimizer, config, rng):
  """State whose params (and matching optimizer slots) are still LogicallyPartitioned boxes."""
  params = _boxed_params(model, config, rng)
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "opt_state": optimizer.init(params), "rng": jax.random.fold_in(rng, 1)}


def state_shardings(model, optimizer, config, mesh):
  """(abstract unboxed state with shardings attached, sharding pytree)."""
  rules = parallel.axis_rules(config)
  rng = jax.random.PRNGKey(config.seed)
  boxed = jax.eval_shape(lambda r: _boxed_state(model, optimizer, config, r), rng)
  shardings = parallel.logical_to_sharding(parallel.logical_specs(boxed), mesh, rules)
  abstract = nn.unbox(boxed)
  parallel.check_divisible(abstract, shardings, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return abstract, shardings


def init_state(model, optimizer, config, shardings):
  init = jax.jit(lambda r: nn.unbox(_boxed_state(model, optimizer, config, r)),
                 out_shardings=shardings)
  return init(jax.random.PRNGKey(config.seed))


def count_params(params):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def parameter_counts(params):
  """What a run logs of its size: every parameter, and those outside the token and position
  embedding tables (Kaplan et al. 2020 count these, N, in their scaling laws)."""
  embedding = sum(int(np.prod(p.shape)) for path, p in jax.tree_util.tree_leaves_with_path(params)
                  if optim.path_name(path).endswith("embedding"))
  total = count_params(params)
  return {"model/parameters": total, "model/non_embedding_parameters": total - embedding}


def param_paths(params):
  """'layer_0/mlp/wi/kernel'-style names of every parameter."""
  return [optim.path_name(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def describe_trainable(state, config):
  """'trainable: N of M parameters; optimizer state X MiB' for the run log."""
  mask = optim.trainable_mask(state["params"], config)
  sizes = [int(np.prod(p.shape)) for p in jax.tree.leaves(state["params"])]
  trainable = sum(n for n, t in zip(sizes, jax.tree.leaves(mask)) if t)
  opt_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state["opt_state"]))
  return (f"trainable: {trainable:,} of {sum(sizes):,} parameters; optimizer state "
          f"{opt_bytes / 2**20:.1f} MiB")
