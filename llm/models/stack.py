"""One stack of layers with its input embeddings: the body of encoders and decoders alike.

Token vectors come in already looked up (the token table is shared, see models/__init__.py); the
stack adds what is its own: position and segment embeddings, a soft prompt, embedding norm and
dropout, then the layers (self-attention, cross-attention when it reads an encoder, MLP) and the
final norm of pre-norm stacks.

Soft prompt tuning (Lester et al., 2021): with `prompt_length` P > 0, P trainable vectors are
inserted after the first token ([CLS] / <s>) as if they were tokens, and their states are dropped
again at the end, so the output keeps the input's length.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm.models.config import ModelConfig
from llm.models.layers import RelativeBias, alibi_bias, attention_mask, constrain, layer_stack
from llm.models.layers import norm, param_init, sinusoidal_table


def insert_prompt(prompt, x, segment_ids, positions, token_types):
  """The (P, embed) prompt vectors after the first token: they join its segment and shift the
  positions after them."""
  p = prompt.shape[0]
  prompt = jnp.broadcast_to(prompt.astype(x.dtype), (x.shape[0], p, x.shape[-1]))
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


class Stack(nn.Module):
  """(batch, length, embed) token vectors -> (batch, length, embed) final hidden states.

  `causal`: each position sees only earlier ones (decoders). `cross`: every layer also attends
  over `context` (the encoder's output, with its own `context_segment_ids`)."""
  cfg: ModelConfig
  num_layers: int
  causal: bool
  cross: bool = False
  prompt_length: int = 0
  train: bool = False
  decode: bool = False   # one chunk of tokens at a time against a KV cache (see layers.Attention)

  @nn.compact
  def __call__(self, x, segment_ids, positions, token_types=None, context=None,
               context_segment_ids=None):
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    if cfg.embed_scale:
      x = x * math.sqrt(cfg.embed_dim)
    if self.prompt_length:
      prompt = self.param("prompt", param_init((None, "embed")),
                          (self.prompt_length, cfg.embed_dim))
      x, segment_ids, positions, token_types = insert_prompt(prompt, x, segment_ids, positions,
                                                             token_types)
    if cfg.position == "learned":
      x += nn.Embed(cfg.max_len, cfg.embed_dim, dtype=dtype,
                    embedding_init=param_init((None, "embed")), name="position_embed")(positions)
    elif cfg.position == "sinusoidal":
      x += sinusoidal_table(positions, cfg.embed_dim).astype(x.dtype)
    if cfg.type_vocab_size:
      types = jnp.zeros(x.shape[:2], jnp.int32) if token_types is None else token_types
      x += nn.Embed(cfg.type_vocab_size, cfg.embed_dim, dtype=dtype,
                    embedding_init=param_init((None, "embed")), name="type_embed")(types)
    if cfg.embed_norm:
      x = norm(cfg, "embed_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not self.train)
    x = constrain(x, ("batch", "length", "embed"))
    inputs = {"mask": attention_mask(segment_ids, self.causal), "positions": positions}
    kv_positions = positions
    if self.decode:
      inputs["mask"], kv_positions, inputs["cache_index"] = self._cached(segment_ids, positions)
    if cfg.position == "relative":
      inputs["bias"] = RelativeBias(cfg, bidirectional=not self.causal,
                                    name="relative_bias")(positions, kv_positions)
    elif cfg.position == "alibi":
      inputs["bias"] = alibi_bias(cfg.num_heads, positions, kv_positions, dtype)
    if self.cross:
      # Packed on both sides: target segment k reads only source segment k.
      inputs.update(context=context,
                    context_mask=attention_mask(segment_ids, False, context_segment_ids))
    x = layer_stack(cfg, x, inputs, self.num_layers, self.cross, self.train, self.decode,
                    self.causal)
    if cfg.norm == "pre":   # pre-norm residual streams are normalised once at the end
      x = norm(cfg, "final_norm")(x)
    if self.prompt_length:
      x = jnp.concatenate([x[:, :1], x[:, 1 + self.prompt_length:]], axis=1)
    return x

  def _cached(self, segment_ids, positions):
    """Decoding: records this chunk's segment ids and positions in the cache; returns the mask of
    the chunk over the whole cache (real tokens at or before each query's slot), the positions
    of every cache slot, and the slot this chunk starts at."""
    initialized = self.has_variable("cache", "segment_ids")
    zeros = nn.with_logical_partitioning(jnp.zeros, ("batch", "length"))
    cached_segments = self.variable("cache", "segment_ids", zeros, segment_ids.shape, jnp.int32)
    cached_positions = self.variable("cache", "positions", zeros, positions.shape, jnp.int32)
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if not initialized:   # init: the cache was only sized
      return attention_mask(segment_ids, self.causal), positions, jnp.zeros((), jnp.int32)
    start = index.value
    update = lambda a, b: jax.lax.dynamic_update_slice(a, b.astype(jnp.int32), (0, start))
    cached_segments.value = update(cached_segments.value, segment_ids)
    cached_positions.value = update(cached_positions.value, positions)
    index.value = start + segment_ids.shape[1]
    slots = jnp.arange(cached_segments.value.shape[1])
    query_slots = start + jnp.arange(segment_ids.shape[1])
    mask = (cached_segments.value[:, None, :] != 0) & (slots[None, None, :] <= query_slots[:, None])
    return mask[:, None], cached_positions.value, start
