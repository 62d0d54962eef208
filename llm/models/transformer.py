"""One Transformer stack for encoders (BERT: bidirectional) and decoders (GPT: causal), plus heads.

The model maps a batch of token ids to a dict of named outputs (`cfg.heads`); objectives pick the
outputs they need. Heads: `lm` (next-token logits), `mlm` (BERT's transform + tied decoder),
`nsp` (pooled [CLS] -> 2 classes), `classify` (pooled [CLS] -> num_classes), `tag` (every token
-> num_classes), `span` (every token -> start and end logits, for extractive QA).
"""
import flax.linen as nn
import jax.numpy as jnp

from llm.models.layers import Block, ModelConfig, attention_mask, constrain, layer_norm, param_init
from llm.models.layers import sinusoidal_table


class Transformer(nn.Module):
  cfg: ModelConfig

  def setup(self):
    cfg = self.cfg
    self.token_embed = nn.Embed(cfg.vocab_size, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
                                embedding_init=param_init(("vocab", "embed")))
    if cfg.position == "learned":
      self.position_embed = nn.Embed(cfg.max_len, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
                                     embedding_init=param_init((None, "embed")))
    if cfg.type_vocab_size:
      self.type_embed = nn.Embed(cfg.type_vocab_size, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
                                 embedding_init=param_init((None, "embed")))
    # Post-LN stacks (BERT) normalise the embeddings; pre-LN stacks (GPT-2) normalise the output.
    self.final_norm = layer_norm(cfg, "embed_norm" if cfg.norm == "post" else "final_norm")
    self.blocks = [Block(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]
    self.embed_dropout = nn.Dropout(cfg.dropout_rate)
    if "lm" in cfg.heads and not cfg.tie_embeddings:
      self.lm_out = nn.Dense(cfg.vocab_size, use_bias=False,
                             kernel_init=param_init(("embed", "vocab")), dtype=jnp.dtype(cfg.dtype))
    if "mlm" in cfg.heads:
      self.mlm_transform = nn.Dense(cfg.embed_dim, kernel_init=param_init(("embed", "mlp")),
                                    bias_init=param_init(("mlp",), nn.initializers.zeros),
                                    dtype=jnp.dtype(cfg.dtype))
      self.mlm_norm = layer_norm(cfg, "mlm_norm")
      self.mlm_bias = self.param("mlm_bias", param_init(("vocab",), nn.initializers.zeros),
                                 (cfg.vocab_size,))
    if {"nsp", "classify"} & set(cfg.heads):   # BERT's pooler: tanh(dense([CLS] state))
      self.pooler = nn.Dense(cfg.embed_dim, kernel_init=param_init(("embed", "mlp")),
                             bias_init=param_init(("mlp",), nn.initializers.zeros),
                             dtype=jnp.dtype(cfg.dtype))
    if "nsp" in cfg.heads:
      self.nsp_out = nn.Dense(2, kernel_init=param_init(("mlp", None)),
                              bias_init=param_init((None,), nn.initializers.zeros))
    self.head_dropout = nn.Dropout(cfg.dropout_rate)
    if "classify" in cfg.heads:
      self.classify_out = nn.Dense(cfg.num_classes, kernel_init=param_init(("mlp", None)),
                                   bias_init=param_init((None,), nn.initializers.zeros))
    if "tag" in cfg.heads:
      self.tag_out = nn.Dense(cfg.num_classes, kernel_init=param_init(("embed", None)),
                              bias_init=param_init((None,), nn.initializers.zeros))
    if "span" in cfg.heads:
      self.span_out = nn.Dense(2, kernel_init=param_init(("embed", None)),
                               bias_init=param_init((None,), nn.initializers.zeros))

  def encode(self, tokens, segment_ids=None, positions=None, token_types=None, train=False):
    """(batch, length) ids -> (batch, length, embed) final hidden states."""
    cfg = self.cfg
    if segment_ids is None:
      segment_ids = (tokens != 0).astype(jnp.int32)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    x = self.token_embed(tokens)
    if cfg.position == "learned":
      x += self.position_embed(positions)
    elif cfg.position == "sinusoidal":
      x += sinusoidal_table(positions, cfg.embed_dim).astype(x.dtype)
    if cfg.type_vocab_size:
      x += self.type_embed(jnp.zeros_like(tokens) if token_types is None else token_types)
    if cfg.norm == "post":
      x = self.final_norm(x)
    x = constrain(self.embed_dropout(x, deterministic=not train), ("batch", "length", "embed"))
    mask = attention_mask(segment_ids, cfg.causal)
    for block in self.blocks:
      x = block(x, mask, positions, train)
    if cfg.norm == "pre":
      x = self.final_norm(x)
    return x

  def __call__(self, batch, train=False):
    """Runs the stack on a batch dict and returns the outputs named in `cfg.heads`."""
    cfg = self.cfg
    hidden = self.encode(batch["inputs"], batch.get("segment_ids"), batch.get("positions"),
                         batch.get("token_types"), train)
    outputs = {"hidden": hidden}
    if "lm" in cfg.heads:
      logits = self.token_embed.attend(hidden) if cfg.tie_embeddings else self.lm_out(hidden)
      outputs["lm"] = constrain(logits, ("batch", "length", "vocab"))
    if "mlm" in cfg.heads:
      h = self.mlm_norm(nn.gelu(self.mlm_transform(hidden), approximate=False))
      logits = self.token_embed.attend(h) + self.mlm_bias
      outputs["mlm"] = constrain(logits, ("batch", "length", "vocab"))
    if {"nsp", "classify"} & set(cfg.heads):
      pooled = jnp.tanh(self.pooler(hidden[:, 0]))
      if "nsp" in cfg.heads:
        outputs["nsp"] = self.nsp_out(pooled)
      if "classify" in cfg.heads:   # (batch, num_classes)
        outputs["classify"] = self.classify_out(self.head_dropout(pooled, deterministic=not train))
    if "tag" in cfg.heads:          # (batch, length, num_classes)
      outputs["tag"] = self.tag_out(self.head_dropout(hidden, deterministic=not train))
    if "span" in cfg.heads:         # (batch, length) start and end logits
      span = self.span_out(hidden)
      outputs["span_start"], outputs["span_end"] = span[..., 0], span[..., 1]
    return outputs
