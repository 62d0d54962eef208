"""The block library shared by encoders and decoders: attention, MLP, positions, norms.

Shapes: (batch, length, embed) for hidden states, (batch, length, heads, head_dim) inside attention.
Every parameter and main activation carries logical axis names; `parallel.py` maps them to the mesh.
"""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes and switches of one Transformer; built from `config.model` (see models/__init__.py)."""
  vocab_size: int
  num_layers: int = 4
  embed_dim: int = 256
  num_heads: int = 4
  num_kv_heads: int = 0          # 0 = num_heads (multi-head); fewer = grouped-query attention
  head_dim: int = 0              # 0 = embed_dim // num_heads
  mlp_dim: int = 1024
  max_len: int = 128             # size of the learned position table / longest allowed sequence
  position: str = "learned"      # learned | sinusoidal | rope
  rope_base: float = 10000.0
  norm: str = "pre"              # pre | post (post = original Transformer / BERT)
  layer_norm_eps: float = 1e-6
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  causal: bool = True
  type_vocab_size: int = 0       # BERT segment (sentence A/B) embeddings; 0 = none
  tie_embeddings: bool = True
  heads: tuple[str, ...] = ("lm",)
  num_classes: int = 0           # for the `classify` and `tag` heads
  prompt_length: int = 0         # soft prompt: trainable vectors inserted after the first token
  dtype: str = "float32"         # compute dtype; parameters are always float32
  attention_impl: str = "auto"   # auto | xla | cudnn: passed to jax.nn.dot_product_attention

  @property
  def kv_heads(self):
    return self.num_kv_heads or self.num_heads

  @property
  def qkv_dim(self):
    return self.head_dim or self.embed_dim // self.num_heads


def param_init(names, init=nn.initializers.normal(0.02)):
  return nn.with_logical_partitioning(init, names)


def constrain(x, names):
  return nn.with_logical_constraint(x, names)


def attention_mask(segment_ids, causal):
  """Boolean (batch, 1, q_len, kv_len): a token sees tokens of its own segment (not padding = 0)."""
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  mask = same & (segment_ids != 0)[:, None, :]
  if causal:
    length = segment_ids.shape[1]
    mask &= jnp.tril(jnp.ones((length, length), bool))
  return mask[:, None]


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


def dot_product_attention_with_dropout(q, k, v, mask, dropout_rng, rate):
  """Softmax attention written out, for the one case jax.nn.dot_product_attention lacks: dropout."""
  groups = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)
  keep = jax.random.bernoulli(dropout_rng, 1.0 - rate, probs.shape)
  probs = jnp.where(keep, probs / (1.0 - rate), 0.0).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


class Attention(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, mask, positions, train):
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    dense = lambda features, names, name: nn.DenseGeneral(
        features, dtype=dtype, kernel_init=param_init(names),
        bias_init=param_init(names[1:], nn.initializers.zeros), name=name)
    q = dense((cfg.num_heads, cfg.qkv_dim), ("embed", "heads", "kv"), "query")(x)
    k = dense((cfg.kv_heads, cfg.qkv_dim), ("embed", "kv_heads", "kv"), "key")(x)
    v = dense((cfg.kv_heads, cfg.qkv_dim), ("embed", "kv_heads", "kv"), "value")(x)
    if cfg.position == "rope":
      q, k = apply_rope(q, positions, cfg.rope_base), apply_rope(k, positions, cfg.rope_base)
    q = constrain(q, ("batch", "length", "heads", "kv"))
    k = constrain(k, ("batch", "length", "kv_heads", "kv"))
    v = constrain(v, ("batch", "length", "kv_heads", "kv"))
    if train and cfg.attention_dropout_rate > 0:
      out = dot_product_attention_with_dropout(
          q, k, v, mask, self.make_rng("dropout"), cfg.attention_dropout_rate)
    else:
      impl = None if cfg.attention_impl == "auto" else cfg.attention_impl
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)
    out = constrain(out, ("batch", "length", "heads", "kv"))
    return nn.DenseGeneral(
        cfg.embed_dim, axis=(-2, -1), dtype=dtype,
        kernel_init=param_init(("heads", "kv", "embed")),
        bias_init=param_init(("embed",), nn.initializers.zeros), name="out")(out)


class Mlp(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    h = nn.Dense(cfg.mlp_dim, dtype=dtype, kernel_init=param_init(("embed", "mlp")),
                 bias_init=param_init(("mlp",), nn.initializers.zeros), name="wi")(x)
    h = constrain(nn.gelu(h, approximate=False), ("batch", "length", "mlp"))
    return nn.Dense(cfg.embed_dim, dtype=dtype, kernel_init=param_init(("mlp", "embed")),
                    bias_init=param_init(("embed",), nn.initializers.zeros), name="wo")(h)


def layer_norm(cfg, name):
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype),
                      scale_init=param_init(("embed",), nn.initializers.ones),
                      bias_init=param_init(("embed",), nn.initializers.zeros), name=name)


class Block(nn.Module):
  """One Transformer layer; `cfg.norm` picks pre-LN (GPT-2) or post-LN (original, BERT)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, mask, positions, train):
    cfg = self.cfg
    drop = lambda y: nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)
    if cfg.norm == "pre":
      x = x + drop(Attention(cfg, name="attention")(layer_norm(cfg, "attention_norm")(x), mask,
                                                     positions, train))
      x = x + drop(Mlp(cfg, name="mlp")(layer_norm(cfg, "mlp_norm")(x)))
    else:
      x = layer_norm(cfg, "attention_norm")(
          x + drop(Attention(cfg, name="attention")(x, mask, positions, train)))
      x = layer_norm(cfg, "mlp_norm")(x + drop(Mlp(cfg, name="mlp")(x)))
    return constrain(x, ("batch", "length", "embed"))
