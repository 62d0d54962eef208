"""Heads: small modules from a backbone's hidden states to a task's outputs, outside the backbone.

Each head maps (hidden (batch, length, embed), pooled (batch, embed) or None, attend, train,
batch) to a dict of named outputs; `attend` is the token table's transpose (for tied output
embeddings); `batch` is the model's input, for heads that read more than the states.
A task names the heads it needs (tasks/*.py); the model builds only those, as `<name>_head`
(BERT's pooler, shared by `nsp` and `classify`, is `pooler`).
"""
import flax.linen as nn
import jax.numpy as jnp

from llm.models.config import ModelConfig
from llm.models.layers import ZEROS, constrain, dense, norm, param_init


class Lm(nn.Module):
  """Next-token logits: the tied token table, or a separate output matrix."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    cfg = self.cfg
    if cfg.tie_embeddings:
      logits = attend(hidden)
    else:
      logits = dense(cfg, cfg.vocab_size, ("embed", "vocab"), "out", use_bias=False)(hidden)
    if cfg.unused_vocab:   # never predicted, never in a loss's normaliser
      used = jnp.arange(cfg.vocab_size) < cfg.vocab_size - cfg.unused_vocab
      logits = jnp.where(used, logits, jnp.asarray(-1e9, logits.dtype))
    return {"lm": constrain(logits, ("batch", "length", "vocab"))}


class Mlm(nn.Module):
  """BERT's masked-LM head: dense + GELU + norm, then the tied token table plus a bias. With
  `mlm_positions` (batch, P) in the batch, only those positions are scored: (batch, P, vocab)
  logits instead of (batch, length, vocab), as BERT's max_predictions_per_seq does; the output
  layer is otherwise ~15% of a small BERT's training FLOPs, for 15% of its positions."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    cfg = self.cfg
    if "mlm_positions" in batch:
      hidden = jnp.take_along_axis(hidden, batch["mlm_positions"][..., None], axis=1)
    h = dense(cfg, cfg.embed_dim, ("embed", "mlp"), "transform", use_bias=True)(hidden)
    h = norm(cfg, "norm")(nn.gelu(h, approximate=False))
    bias = self.param("bias", param_init(("vocab",), ZEROS), (cfg.vocab_size,))
    return {"mlm": constrain(attend(h) + bias, ("batch", "length", "vocab"))}


class Pooler(nn.Module):
  """BERT's pooled state: tanh(dense(state of the first token))."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden):
    return jnp.tanh(dense(self.cfg, self.cfg.embed_dim, ("embed", "mlp"), "dense",
                          use_bias=True)(hidden[:, 0]))


def _classifier(cfg, features, names):
  return nn.Dense(features, kernel_init=param_init(names), bias_init=param_init((None,), ZEROS),
                  name="out")


class Nsp(nn.Module):
  """Next-sentence prediction: pooled -> 2 logits (1 = B follows A)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    return {"nsp": _classifier(self.cfg, 2, ("mlp", None))(pooled)}


class Classify(nn.Module):
  """Sequence classification: dropout(pooled) -> (batch, num_classes)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    pooled = nn.Dropout(self.cfg.dropout_rate)(pooled, deterministic=not train)
    return {"classify": _classifier(self.cfg, self.cfg.num_classes, ("mlp", None))(pooled)}


class Tag(nn.Module):
  """Token classification: dropout(hidden) -> (batch, length, num_classes)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    hidden = nn.Dropout(self.cfg.dropout_rate)(hidden, deterministic=not train)
    return {"tag": _classifier(self.cfg, self.cfg.num_classes, ("embed", None))(hidden)}


class Span(nn.Module):
  """Extractive QA: (batch, length) start and end logits."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden, pooled, attend, train, batch):
    span = _classifier(self.cfg, 2, ("embed", None))(hidden)
    return {"span_start": span[..., 0], "span_end": span[..., 1]}


HEADS = {"lm": Lm, "mlm": Mlm, "nsp": Nsp, "classify": Classify, "tag": Tag, "span": Span}
POOLED = ("nsp", "classify")   # heads that read the pooler's output
CLASS_HEADS = ("classify", "tag")   # heads sized by model.num_classes
TASK_HEADS = ("classify", "tag", "span")   # new in a fine-tuning run: they train beside LoRA
