"""One Transformer stack for encoders (BERT: bidirectional) and decoders (GPT: causal), plus heads.

The model maps a batch of token ids to a dict of named outputs (`cfg.heads`); objectives pick the
outputs they need. Heads: `lm` (next-token logits), `mlm` (BERT's transform + tied decoder),
`nsp` (pooled [CLS] -> 2 classes), `classify` (pooled [CLS] -> num_classes), `tag` (every token
-> num_classes), `span` (every token -> start and end logits, for extractive QA).

Soft prompt tuning (Lester et al., 2021): with `prompt_length` P > 0, P trainable vectors are
inserted after the first token ([CLS] / <s>) as if they were tokens, and their states are dropped
again before the heads, so every output keeps the input's length.
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
    if cfg.prompt_length:
      self.prompt = self.param("prompt", param_init((None, "embed")),
                               (cfg.prompt_length, cfg.embed_dim))
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
    if cfg.prompt_length:
      x, segment_ids, positions, token_types = self._insert_prompt(x, segment_ids, positions,
                                                                   token_types)
    if cfg.position == "learned":
      x += self.position_embed(positions)
    elif cfg.position == "sinusoidal":
      x += sinusoidal_table(positions, cfg.embed_dim).astype(x.dtype)
    if cfg.type_vocab_size:
      x += self.type_embed(jnp.zeros(x.shape[:2], jnp.int32) if token_types is None
                           else token_types)
    if cfg.norm == "post":
      x = self.final_norm(x)
    x = constrain(self.embed_dropout(x, deterministic=not train), ("batch", "length", "embed"))
    mask = attention_mask(segment_ids, cfg.causal)
    for block in self.blocks:
      x = block(x, mask, positions, train)
    if cfg.norm == "pre":
      x = self.final_norm(x)
    if cfg.prompt_length:
      x = jnp.concatenate([x[:, :1], x[:, 1 + cfg.prompt_length:]], axis=1)
    return x

  def _insert_prompt(self, x, segment_ids, positions, token_types):
    """The prompt vectors after the first token: they join its segment and shift positions."""
    p = self.cfg.prompt_length
    prompt = jnp.broadcast_to(self.prompt.astype(x.dtype), (x.shape[0], p, x.shape[-1]))
    def insert(a, middle):
      return jnp.concatenate([a[:, :1], middle, a[:, 1:]], axis=1)
    x = insert(x, prompt)
    segment_ids = insert(segment_ids, jnp.repeat(segment_ids[:, :1], p, axis=1))
    offsets = jnp.arange(1, p + 1, dtype=positions.dtype)[None]
    positions = jnp.concatenate([positions[:, :1], positions[:, :1] + offsets,
                                 positions[:, 1:] + p], axis=1)
    if token_types is not None:
      token_types = insert(token_types, jnp.repeat(token_types[:, :1], p, axis=1))
    return x, segment_ids, positions, token_types

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
