"""Builds the network named by `config.model`."""
import dataclasses

from llm.models.layers import ModelConfig
from llm.models.transformer import Transformer

POSITIONS = ("learned", "sinusoidal", "rope")
NORMS = ("pre", "post")
HEADS = ("lm", "mlm", "nsp", "classify", "tag", "span")


def model_config(config):
  """A ModelConfig from the experiment config; the vocabulary size is the tokenizer's."""
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  values = {k: v for k, v in config.model.items() if k in fields}
  values["vocab_size"] = config.vocab_size
  values["heads"] = tuple(values.get("heads", ("lm",)))
  cfg = ModelConfig(**values)
  if cfg.position not in POSITIONS:
    raise ValueError(f"model.position={cfg.position!r}: expected one of {POSITIONS}")
  if cfg.norm not in NORMS:
    raise ValueError(f"model.norm={cfg.norm!r}: expected one of {NORMS}")
  if unknown := set(cfg.heads) - set(HEADS):
    raise ValueError(f"model.heads has {sorted(unknown)}: expected names from {HEADS}")
  if cfg.embed_dim % cfg.num_heads and not cfg.head_dim:
    raise ValueError(f"model.embed_dim={cfg.embed_dim} is not divisible by "
                     f"model.num_heads={cfg.num_heads}; set model.head_dim explicitly")
  if cfg.num_heads % cfg.kv_heads:
    raise ValueError(f"model.num_heads={cfg.num_heads} must be a multiple of "
                     f"model.num_kv_heads={cfg.kv_heads}")
  if {"classify", "tag"} & set(cfg.heads) and cfg.num_classes < 2:
    raise ValueError(f"model.num_classes={cfg.num_classes}: the classify/tag heads need >= 2")
  if cfg.dtype not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype={cfg.dtype!r}: expected 'float32' or 'bfloat16'")
  return cfg


def build_model(config):
  return Transformer(model_config(config))
