"""What each family brings to decoding (llm/decoding.py runs the search over it): how prompts
become a batch, the prefill that fills the KV cache, and the one-token step.

  decoder          prompts are left-padded, so every row's next token sits in the same cache
                   slot; each row keeps its own positions.
  encoder_decoder  sources are encoded once (kept in the step's `context`) and decoding starts
                   from the decoder's start token.

`apply(cache, batch) -> (outputs, cache)` is the model's decode-mode call with its weights bound.
A prefill returns the first step's (batch, vocab) logits, the filled cache, the `context` that
every later step repeats (per-row arrays, repeated with the rows for beam search) and each row's
next position; a step maps (cache, context, tokens, positions) to (logits, cache).
"""
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np


class FamilyDecoding(NamedTuple):
  prompt_ids: Callable     # (tokenizer, text ids) -> the ids the model reads first
  positions: Callable      # (prompt length, new tokens) -> the positions a row takes
  pad: Callable            # (list of prompt ids, length) -> dict of numpy arrays
  cache_len: Callable      # (padded prompt length, new tokens) -> cache slots
  cache_batch: Callable    # (batch, cache_len) ones -> the batch that sizes the cache
  prefill: Callable        # (apply, cache, prompt, start_id) -> (logits, cache, context, next)
  step: Callable           # (apply, cache, context, tokens, positions) -> (logits, cache)


def _last(outputs):
  return outputs["lm"][:, -1]


# --- decoders --------------------------------------------------------------------------------

def _decoder_pad(prompts, length):
  batch = len(prompts)
  tokens, segments, positions = (np.zeros((batch, length), np.int32) for _ in range(3))
  for row, ids in enumerate(prompts):
    start = length - len(ids)
    tokens[row, start:] = ids
    segments[row, start:] = 1
    positions[row, start:] = np.arange(len(ids))
  return {"inputs": tokens, "segment_ids": segments, "positions": positions,
          "lengths": np.asarray([len(p) for p in prompts], np.int32)}


def _decoder_prefill(apply, cache, prompt, start_id):
  del start_id   # the prompt holds its own start
  outputs, cache = apply(cache, {k: prompt[k] for k in ("inputs", "segment_ids", "positions")})
  return _last(outputs), cache, {}, prompt["lengths"]


def _decoder_step(apply, cache, context, tokens, positions):
  del context
  tokens, positions = tokens[:, None], positions[:, None].astype(jnp.int32)
  outputs, cache = apply(cache, {"inputs": tokens, "segment_ids": jnp.ones_like(tokens),
                                 "positions": positions})
  return _last(outputs), cache


DECODER = FamilyDecoding(
    prompt_ids=lambda tok, ids: [tok.bos_id] * tok.add_bos + ids,
    positions=lambda prompt_len, new_tokens: prompt_len + new_tokens,
    pad=_decoder_pad,
    cache_len=lambda prompt_len, new_tokens: prompt_len + new_tokens + 1,
    cache_batch=lambda ones: {"inputs": ones},
    prefill=_decoder_prefill,
    step=_decoder_step)


# --- encoder-decoders ------------------------------------------------------------------------

def _encoder_decoder_pad(sources, length):
  tokens = np.zeros((len(sources), length), np.int32)
  for row, ids in enumerate(sources):
    tokens[row, :len(ids)] = ids
  lengths = np.asarray([len(ids) for ids in sources])
  return {"inputs": tokens, "segment_ids": (np.arange(length) < lengths[:, None]).astype(np.int32)}


def _encoder_decoder_prefill(apply, cache, prompt, start_id):
  start = jnp.full((prompt["inputs"].shape[0], 1), start_id, jnp.int32)
  outputs, cache = apply(cache, {"inputs": prompt["inputs"], "segment_ids": prompt["segment_ids"],
                                 "decoder_inputs": start,
                                 "decoder_segment_ids": jnp.ones_like(start),
                                 "decoder_positions": jnp.zeros_like(start)})
  context = {"inputs": prompt["inputs"], "segment_ids": prompt["segment_ids"],
             "encoded": outputs["encoded"]}
  return _last(outputs), cache, context, jnp.ones_like(start[:, 0])


def _encoder_decoder_step(apply, cache, context, tokens, positions):
  tokens, positions = tokens[:, None], positions[:, None].astype(jnp.int32)
  outputs, cache = apply(cache, dict(context, decoder_inputs=tokens,
                                     decoder_segment_ids=jnp.ones_like(tokens),
                                     decoder_positions=positions))
  return _last(outputs), cache


ENCODER_DECODER = FamilyDecoding(
    prompt_ids=lambda tok, ids: ids + [tok.eos_id],
    positions=lambda prompt_len, new_tokens: prompt_len,   # the encoder's; the decoder's own
    pad=_encoder_decoder_pad,
    cache_len=lambda prompt_len, new_tokens: new_tokens + 1,
    cache_batch=lambda ones: {"inputs": ones[:, :1], "decoder_inputs": ones},
    prefill=_encoder_decoder_prefill,
    step=_encoder_decoder_step)


DECODING = {"decoder": DECODER, "encoder_decoder": ENCODER_DECODER}
