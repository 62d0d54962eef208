"""The block library every family is built from: norms, MLPs, positions, attention, one layer.

Shapes: (batch, length, embed) for hidden states, (batch, length, heads, head_dim) inside attention.
Every parameter and main activation carries logical axis names; `parallel.py` maps them to the mesh.
Each kind (norm, MLP, position, norm placement, remat policy) is chosen by name from a table here,
so a new variant is one entry, not a branch in every module.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm.models.config import ModelConfig


class ParamAxes(nn.LogicallyPartitioned):
  """A parameter's logical axis names, which the state's shardings are made from. Unboxing adds
  no sharding constraint: jit already lays parameters out by those shardings, and DenseGeneral
  unboxes its kernel while it is still flat (2-D) under the full-rank names, which a constraint
  rejects once a step is traced with the rules in scope (parallel.scoped)."""

  def unbox(self, apply_constraint=True):
    del apply_constraint
    return self.value


def param_init(names, init=nn.initializers.normal(0.02)):
  def boxed(*args, **kwargs):
    return ParamAxes(init(*args, **kwargs), names)
  return boxed


ZEROS = nn.initializers.zeros


def constrain(x, names):
  return nn.with_logical_constraint(x, names)


def dense(cfg, features, names, name, axis=-1, use_bias=None):
  """A projection whose kernel carries logical `names` (input axes first) and optional bias."""
  use_bias = cfg.use_bias if use_bias is None else use_bias
  n_in = len(axis) if isinstance(axis, tuple) else 1
  return nn.DenseGeneral(features, axis=axis, use_bias=use_bias, dtype=jnp.dtype(cfg.dtype),
                         kernel_init=param_init(names),
                         bias_init=param_init(names[n_in:], ZEROS), name=name)


# --- norms -------------------------------------------------------------------------------------

NORMS = {
    "layernorm": lambda cfg, name: nn.LayerNorm(
        epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype),
        scale_init=param_init(("embed",), nn.initializers.ones),
        bias_init=param_init(("embed",), ZEROS), name=name),
    "rmsnorm": lambda cfg, name: nn.RMSNorm(
        epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype),
        scale_init=param_init(("embed",), nn.initializers.ones), name=name),
}


def norm(cfg, name):
  return NORMS[cfg.norm_kind](cfg, name)


# --- MLPs --------------------------------------------------------------------------------------

# name -> (activation, gated). Gated MLPs (Shazeer, 2020) multiply act(x W_gate) with x W_in.
MLPS = {"gelu": (lambda x: nn.gelu(x, approximate=False), False),
        "gelu_tanh": (lambda x: nn.gelu(x, approximate=True), False),
        "relu": (nn.relu, False),
        "swiglu": (nn.silu, True),
        "geglu": (lambda x: nn.gelu(x, approximate=True), True)}


class Mlp(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    activation, gated = MLPS[cfg.mlp]
    h = dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "wi")(x)
    if gated:
      h = activation(dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "wi_gate")(x)) * h
    else:
      h = activation(h)
    h = constrain(h, ("batch", "length", "mlp"))
    return dense(cfg, cfg.embed_dim, ("mlp", "embed"), "wo")(h)


# --- positions ---------------------------------------------------------------------------------

POSITIONS = ("learned", "sinusoidal", "rope", "relative", "alibi", "none")


def sinusoidal_table(positions, dim, base=10000.0):
  """(batch, length, dim) fixed sin/cos encodings of integer positions."""
  freqs = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  angles = positions[..., None].astype(jnp.float32) * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def apply_rope(x, positions, base):
  """Rotary embedding on (batch, length, heads, head_dim), rotating the two halves of head_dim."""
  half = x.shape[-1] // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * freqs      # (batch, length, half)
  sin, cos = jnp.sin(angles)[:, :, None], jnp.cos(angles)[:, :, None]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


def relative_bucket(offset, bidirectional, num_buckets, max_distance):
  """T5's bucket of each key-minus-query offset: exact buckets for small distances, then
  logarithmically wider ones up to max_distance; bidirectional stacks give later keys their own
  half of the buckets, causal ones send every later key to bucket 0 (it is masked anyway)."""
  bucket = jnp.zeros_like(offset)
  if bidirectional:
    num_buckets //= 2
    bucket += (offset > 0) * num_buckets
    distance = jnp.abs(offset)
  else:
    distance = jnp.maximum(-offset, 0)
  exact = num_buckets // 2
  log_ratio = jnp.log(jnp.maximum(distance, 1) / exact) / jnp.log(max_distance / exact)
  far = jnp.minimum(exact + (log_ratio * (num_buckets - exact)).astype(offset.dtype),
                    num_buckets - 1)
  return bucket + jnp.where(distance < exact, distance, far)


def alibi_slopes(num_heads):
  """ALiBi's per-head slopes (Press et al. 2022): the geometric sequence 2^(-8/n), 2^(-16/n), ...
  for n heads, n a power of two; otherwise the largest power of two's, then every other slope
  of twice as many heads, as the paper's code does."""
  def powers_of_two(n):
    return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
  below = 2 ** int(math.floor(math.log2(num_heads)))
  if below == num_heads:
    return powers_of_two(num_heads)
  return powers_of_two(below) + powers_of_two(2 * below)[0::2][:num_heads - below]


def alibi_bias(num_heads, q_positions, kv_positions, dtype):
  """(batch, heads, q_len, kv_len) ALiBi logit bias: minus each head's slope times the distance
  between query and key positions (past keys in a causal stack; either side, symmetric, in a
  bidirectional one). No parameters; it depends on distances only, so it extrapolates to
  sequences longer than training's."""
  distance = jnp.abs(q_positions[:, :, None] - kv_positions[:, None, :]).astype(jnp.float32)
  slopes = jnp.asarray(alibi_slopes(num_heads), jnp.float32)
  return (-slopes[None, :, None, None] * distance[:, None]).astype(dtype)


class RelativeBias(nn.Module):
  """(batch, heads, q_len, kv_len) attention logit bias learned per (bucket, head), T5-style:
  one table per stack, shared by all its layers."""
  cfg: ModelConfig
  bidirectional: bool

  @nn.compact
  def __call__(self, q_positions, kv_positions):
    cfg = self.cfg
    table = self.param("embedding", param_init((None, "heads")),
                       (cfg.relative_buckets, cfg.num_heads))
    offset = kv_positions[:, None, :] - q_positions[:, :, None]          # (batch, q, kv)
    buckets = relative_bucket(offset, self.bidirectional, cfg.relative_buckets,
                              cfg.relative_max_distance)
    return jnp.moveaxis(table[buckets], -1, 1).astype(jnp.dtype(cfg.dtype))


# --- attention ---------------------------------------------------------------------------------

def attention_mask(segment_ids, causal, kv_segment_ids=None):
  """Boolean (batch, 1, q_len, kv_len): a query sees keys of its own segment (not padding = 0).
  `kv_segment_ids` (cross-attention) are the keys' segments; causal masks need q_len == kv_len."""
  kv = segment_ids if kv_segment_ids is None else kv_segment_ids
  mask = (segment_ids[:, :, None] == kv[:, None, :]) & (kv != 0)[:, None, :]
  if causal:
    length = segment_ids.shape[1]
    mask &= jnp.tril(jnp.ones((length, length), bool))
  return mask[:, None]


def dot_product_attention_with_dropout(q, k, v, mask, dropout_rng, rate, bias=None):
  """Softmax attention written out, for the one case jax.nn.dot_product_attention lacks: dropout."""
  groups = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
  if bias is not None:
    scores += bias.astype(jnp.float32)
  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)
  keep = jax.random.bernoulli(dropout_rng, 1.0 - rate, probs.shape)
  probs = jnp.where(keep, probs / (1.0 - rate), 0.0).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


class Attention(nn.Module):
  """Multi-head (or grouped-query) attention of `x` over `context` (= x for self-attention).
  RoPE turns queries and keys by `positions` (self-attention only); `mask` says who sees whom;
  `bias` (batch, heads, q_len, kv_len) is added to the logits (T5's relative positions, ALiBi).

  With `decode`, self-attention keeps its keys and values in the `cache` collection: a call with
  q_len new tokens writes them at `cache_index` and attends over the whole cache (`mask` is then
  (batch, 1, q_len, cache_len), built by the stack). The first call, under `init`, only sizes
  the cache: its input length is the longest sequence the cache will hold."""
  cfg: ModelConfig
  rotary: bool = True
  decode: bool = False
  causal: bool = False   # `mask` is (also) causal: cuDNN then skips the masked-out half

  @nn.compact
  def __call__(self, x, mask, positions, train, context=None, bias=None, cache_index=None):
    cfg = self.cfg
    cross = context is not None
    context = x if context is None else context
    q = dense(cfg, (cfg.num_heads, cfg.qkv_dim), ("embed", "heads", "kv"), "query")(x)
    k = dense(cfg, (cfg.kv_heads, cfg.qkv_dim), ("embed", "kv_heads", "kv"), "key")(context)
    v = dense(cfg, (cfg.kv_heads, cfg.qkv_dim), ("embed", "kv_heads", "kv"), "value")(context)
    if cfg.position == "rope" and self.rotary:
      q, k = apply_rope(q, positions, cfg.rope_base), apply_rope(k, positions, cfg.rope_base)
    if self.decode and not cross:
      k, v = self._cached(k, v, cache_index)
    q = constrain(q, ("batch", "length", "heads", "kv"))
    k = constrain(k, ("batch", "length", "kv_heads", "kv"))
    v = constrain(v, ("batch", "length", "kv_heads", "kv"))
    if train and cfg.attention_dropout_rate > 0:
      out = dot_product_attention_with_dropout(
          q, k, v, mask, self.make_rng("dropout"), cfg.attention_dropout_rate, bias)
    else:
      impl = None if cfg.attention_impl == "auto" else cfg.attention_impl
      # cuDNN turns `mask` into an additive bias it cannot skip on; saying the mask is causal as
      # well lets its kernel leave out the blocks above the diagonal. Every query that sees a key
      # gets the same result (the mask already holds the causal part); padding queries, which see
      # none and carry no loss, may get another arbitrary output. Not with a cache: q_len != kv_len.
      is_causal = impl == "cudnn" and self.causal and not self.decode and not cross
      out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal,
                                         implementation=impl)
    out = constrain(out, ("batch", "length", "heads", "kv"))
    return dense(cfg, cfg.embed_dim, ("heads", "kv", "embed"), "out", axis=(-2, -1))(out)

  def _cached(self, k, v, index):
    """(keys, values) of the whole cache after writing this call's at `index`."""
    initialized = self.has_variable("cache", "cached_key")
    names = ("batch", "length", "kv_heads", "kv")
    zeros = nn.with_logical_partitioning(jnp.zeros, names)
    cached_k = self.variable("cache", "cached_key", zeros, k.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", zeros, v.shape, v.dtype)
    if not initialized:   # init: the cache was only sized
      return k, v
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k.astype(cached_k.value.dtype),
                                                  (0, index, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v.astype(cached_v.value.dtype),
                                                  (0, index, 0, 0))
    return cached_k.value, cached_v.value


# --- one layer ---------------------------------------------------------------------------------

def pre_norm(x, sublayer, norm_layer, drop):
  return x + drop(sublayer(norm_layer(x)))


def post_norm(x, sublayer, norm_layer, drop):
  return norm_layer(x + drop(sublayer(x)))


PLACEMENTS = {"pre": pre_norm, "post": post_norm}


class Block(nn.Module):
  """One layer: self-attention, cross-attention over `inputs["context"]` (when `cross`), MLP; each
  a residual sublayer whose norm sits where `cfg.norm` says. Returns (x, None) so that the same
  module runs under nn.scan. `inputs` holds what every layer shares: masks, positions, context."""
  cfg: ModelConfig
  cross: bool = False
  train: bool = False
  decode: bool = False
  causal: bool = False

  @nn.compact
  def __call__(self, x, inputs):
    cfg, residual = self.cfg, PLACEMENTS[self.cfg.norm]
    drop = lambda y: nn.Dropout(cfg.dropout_rate)(y, deterministic=not self.train)
    attend = Attention(cfg, decode=self.decode, causal=self.causal, name="attention")
    x = residual(x, lambda h: attend(h, inputs["mask"], inputs["positions"], self.train,
                                     bias=inputs.get("bias"),
                                     cache_index=inputs.get("cache_index")),
                 norm(cfg, "attention_norm"), drop)
    if self.cross:
      cross = Attention(cfg, rotary=False, name="cross_attention")
      x = residual(x, lambda h: cross(h, inputs["context_mask"], None, self.train,
                                      context=inputs["context"]),
                   norm(cfg, "cross_attention_norm"), drop)
    x = residual(x, Mlp(cfg, name="mlp"), norm(cfg, "mlp_norm"), drop)
    return constrain(x, ("batch", "length", "embed")), None


# Names for `model.remat`: what each layer keeps for the backward pass (the rest is recomputed).
REMAT_POLICIES = {
    "none": None,                                     # no rematerialisation: keep everything
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only the layer inputs
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def layer_stack(cfg, x, inputs, num_layers, cross, train, decode=False, causal=False):
  """Runs `num_layers` Blocks inside the calling module: `layer_0`, `layer_1`, ... or, with
  cfg.scan_layers, one nn.scan named `layers` whose params (and KV caches) have a leading
  `layers` axis."""
  block = Block
  if cfg.remat != "none":
    block = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    scanned = nn.scan(block, variable_axes={"params": 0, "cache": 0},
                      split_rngs={"params": True, "dropout": True},
                      in_axes=nn.broadcast, length=num_layers,
                      metadata_params={nn.PARTITION_NAME: "layers"})
    return scanned(cfg, cross, train, decode, causal, name="layers")(x, inputs)[0]
  for i in range(num_layers):
    x, _ = block(cfg, cross, train, decode, causal, name=f"layer_{i}")(x, inputs)
  return x
