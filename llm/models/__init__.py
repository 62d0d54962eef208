"""The model: one family's backbone (models/families.py) plus the heads a task asks for.

Parameter layout: `token_embed` (shared by every stack and the tied output heads), `encoder/` and
or `decoder/` (layers `layer_0`, `layer_1`, ... or, with model.scan_layers, one stacked `layers`),
`pooler` and `<head>_head` for each head (models/heads.py).
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from llm.models import heads as heads_lib
from llm.models.families import FAMILIES
from llm.models.config import ModelConfig
from llm.models.layers import MLPS, NORMS, PLACEMENTS, POSITIONS, REMAT_POLICIES
from llm.models.layers import param_init


class Model(nn.Module):
  """batch -> {"hidden": final hidden states, plus each head's outputs}. `decode`: the batch is
  the next chunk of a sequence being generated, attended against the `cache` collection."""
  cfg: ModelConfig
  heads: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, batch, train=False, decode=False):
    cfg = self.cfg
    token_embed = nn.Embed(cfg.vocab_size, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
                           embedding_init=param_init(("vocab", "embed")), name="token_embed")
    outputs = FAMILIES[cfg.family](cfg, batch, token_embed, train, decode)
    hidden = outputs["hidden"]
    pooled = None
    if set(heads_lib.POOLED) & set(self.heads):
      pooled = heads_lib.Pooler(cfg, name="pooler")(hidden)
    dtype = jnp.dtype(cfg.dtype)

    def attend(h):
      """The tied output layer, h @ table.T. As an einsum over the table's own layout: XLA on
      CPU copies a transposed table (the whole vocabulary) every call otherwise."""
      table = jnp.asarray(token_embed.embedding, dtype)
      return jnp.einsum("...d,vd->...v", h.astype(dtype), table)

    for name in self.heads:
      head = heads_lib.HEADS[name](cfg, name=f"{name}_head")
      outputs.update(head(hidden, pooled, attend, train, batch))
    return outputs


def _choice(key, value, options):
  if value not in options:
    raise ValueError(f"model.{key}={value!r}: expected one of {sorted(options)}")


def model_config(config):
  """A checked ModelConfig from the experiment config; the vocabulary is the tokenizer's pieces
  plus `extra_ids` (e.g. T5's sentinels)."""
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  values = {k: v for k, v in config.model.items() if k in fields}
  cfg = ModelConfig(**values, vocab_size=config.vocab_size + config.get("extra_ids", 0))
  _choice("family", cfg.family, FAMILIES)
  _choice("position", cfg.position, POSITIONS)
  _choice("norm", cfg.norm, PLACEMENTS)
  _choice("norm_kind", cfg.norm_kind, NORMS)
  _choice("mlp", cfg.mlp, MLPS)
  _choice("remat", cfg.remat, REMAT_POLICIES)
  _choice("dtype", cfg.dtype, ("float32", "bfloat16"))
  _choice("attention_impl", cfg.attention_impl, ("auto", "xla", "cudnn"))
  if cfg.embed_dim % cfg.num_heads and not cfg.head_dim:
    raise ValueError(f"model.embed_dim={cfg.embed_dim} is not divisible by "
                     f"model.num_heads={cfg.num_heads}; set model.head_dim explicitly")
  if cfg.num_heads % cfg.kv_heads:
    raise ValueError(f"model.num_heads={cfg.num_heads} must be a multiple of "
                     f"model.num_kv_heads={cfg.kv_heads}")
  if cfg.position == "rope" and cfg.qkv_dim % 2:
    raise ValueError(f"model.position='rope' needs an even head dimension, got {cfg.qkv_dim}")
  return cfg


def build_model(config, heads=None):
  """The model `config` describes, with `heads` (default: those of config.objective's task)."""
  if heads is None:
    from llm import tasks
    heads = tasks.get_task(config.objective).heads(config)
  if unknown := set(heads) - set(heads_lib.HEADS):
    raise ValueError(f"unknown heads {sorted(unknown)}: expected names from "
                     f"{sorted(heads_lib.HEADS)}")
  cfg = model_config(config)
  if set(heads_lib.CLASS_HEADS) & set(heads) and cfg.num_classes < 2:
    raise ValueError(f"model.num_classes={cfg.num_classes}: the classify/tag heads need >= 2")
  return Model(cfg, tuple(heads))
