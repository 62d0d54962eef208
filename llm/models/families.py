"""The three Transformer families, each a few lines composed from `Stack`.

A family maps (config, batch, token table, train, decode) to {"hidden": the states the heads
read} (plus "encoded", the encoder's output, for encoder-decoders):
  encoder          bidirectional stack over `inputs` (BERT)
  decoder          causal stack over `inputs` (GPT-2, Llama)
  encoder_decoder  a bidirectional stack over `inputs`, then a causal stack over
                   `decoder_inputs` that cross-attends to it (original Transformer, T5)
Parameters live under `encoder/` and `decoder/`; the token table is shared (`token_embed`).
"""
import jax.numpy as jnp
import numpy as np

from llm.models.stack import Stack


def _defaults(tokens, segment_ids=None, positions=None):
  """Segment ids (1 for tokens, 0 for padding id 0) and positions 0.. when a batch has none."""
  if segment_ids is None:
    segment_ids = (tokens != 0).astype(jnp.int32)
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  return segment_ids, positions


def _one_stack(cfg, batch, token_embed, train, decode, causal, name):
  segment_ids, positions = _defaults(batch["inputs"], batch.get("segment_ids"),
                                     batch.get("positions"))
  stack = Stack(cfg, cfg.num_layers, causal=causal, prompt_length=cfg.prompt_length, train=train,
                decode=decode, name=name)
  return {"hidden": stack(token_embed(batch["inputs"]), segment_ids, positions,
                          batch.get("token_types"))}


def encoder(cfg, batch, token_embed, train, decode=False):
  return _one_stack(cfg, batch, token_embed, train, False, causal=False, name="encoder")


def decoder(cfg, batch, token_embed, train, decode=False):
  return _one_stack(cfg, batch, token_embed, train, decode, causal=True, name="decoder")


def encoder_decoder(cfg, batch, token_embed, train, decode=False):
  """With `encoded` in the batch (decoding, after the first step) the encoder is not rerun."""
  segment_ids, positions = _defaults(batch["inputs"], batch.get("segment_ids"),
                                     batch.get("positions"))
  encoded = batch.get("encoded")
  if encoded is None:
    encoded = Stack(cfg, cfg.num_layers, causal=False, prompt_length=cfg.prompt_length,
                    train=train, name="encoder")(token_embed(batch["inputs"]), segment_ids,
                                                 positions)
  target_segments, target_positions = _defaults(
      batch["decoder_inputs"], batch.get("decoder_segment_ids"), batch.get("decoder_positions"))
  stack = Stack(cfg, stack_depths(cfg)[1], causal=True, cross=True,
                train=train, decode=decode, name="decoder")
  hidden = stack(token_embed(batch["decoder_inputs"]), target_segments, target_positions,
                 context=encoded, context_segment_ids=segment_ids)
  return {"hidden": hidden, "encoded": encoded}


def stack_depths(cfg):
  """The layers of each stack the family builds: (encoder or decoder,) or (encoder, decoder)."""
  if cfg.family == "encoder_decoder":
    return cfg.num_layers, cfg.num_decoder_layers or cfg.num_layers
  return (cfg.num_layers,)


def example_batch(cfg, batch_size, length):
  """Every input the family reads, as ones (token types as zeros): what init traces."""
  shape = (batch_size, length)
  batch = {"inputs": np.ones(shape, np.int32), "segment_ids": np.ones(shape, np.int32),
           "positions": np.broadcast_to(np.arange(length, dtype=np.int32), shape)}
  if cfg.family == "encoder_decoder":
    batch.update({f"decoder_{k}": v for k, v in batch.items()})
  if cfg.type_vocab_size:
    batch["token_types"] = np.zeros(shape, np.int32)
  return batch


FAMILIES = {"encoder": encoder, "decoder": decoder, "encoder_decoder": encoder_decoder}
