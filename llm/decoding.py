"""Decoding: fill a KV cache with the prompts (prefill), then one token a step, the whole loop one
jitted `lax.while_loop` with the weights as arguments.

Decoders read left-padded prompts, so every row's next token sits in the same cache slot; each
row keeps its own positions. Encoder-decoders encode the sources once and decode from <s>.
Search: greedy (temperature 0), sampling with temperature / top-k / top-p (seeded), or beam search
with a length penalty (score = log-probability / length ** length_penalty, as in Hugging Face).
A sequence ends at any of `stop_ids`, which is not returned.
"""
import dataclasses
import functools
import math
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm import parallel
from llm.data.tokenizer import BOS

NEG_INF = -1e30


@dataclasses.dataclass(frozen=True)
class Settings:
  max_new_tokens: int = 64
  temperature: float = 0.0      # 0 = greedy
  top_k: int = 0                # 0 = the whole vocabulary
  top_p: float = 1.0            # nucleus: the smallest set of tokens holding this much mass
  num_beams: int = 1
  length_penalty: float = 1.0
  stop_ids: tuple[int, ...] = ()
  seed: int = 0
  start_id: int = BOS           # encoder-decoders: the decoder's first token


def check(settings):
  """Raises ValueError for settings that contradict each other or cannot work."""
  s = settings
  if s.max_new_tokens <= 0:
    raise ValueError(f"--max_new_tokens={s.max_new_tokens} must be positive")
  if not 0 <= s.temperature < math.inf:   # NaN fails every comparison
    raise ValueError(f"--temperature={s.temperature} must be a number >= 0 (0 = greedy)")
  if not math.isfinite(s.length_penalty):
    raise ValueError(f"--length_penalty={s.length_penalty} must be a finite number")
  if s.top_k < 0:
    raise ValueError(f"--top_k={s.top_k} must be >= 0 (0 = no limit)")
  if not 0 < s.top_p <= 1:
    raise ValueError(f"--top_p={s.top_p} must be in (0, 1]")
  if s.num_beams < 1:
    raise ValueError(f"--num_beams={s.num_beams} must be >= 1")
  if s.num_beams > 1 and (s.temperature > 0 or s.top_k or s.top_p < 1):
    raise ValueError(f"--num_beams={s.num_beams} is beam search, which does not sample: drop "
                     f"--temperature/--top_k/--top_p or use --num_beams=1")
  if s.temperature == 0 and (s.top_k or s.top_p < 1):
    raise ValueError("--top_k/--top_p filter sampling, but --temperature=0 is greedy; set "
                     "--temperature > 0 to sample")


def filter_logits(logits, top_k, top_p):
  """(batch, vocab) logits with -inf outside the top-k tokens and outside the nucleus (the most
  likely tokens whose probabilities first sum to >= top_p; the best token always stays)."""
  logits = logits.astype(jnp.float32)
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, -1)
    probs = jax.nn.softmax(sorted_logits, -1)
    before = jnp.cumsum(probs, -1) - probs     # mass of the better tokens
    keep_sorted = before < top_p
    keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(
        keep_sorted)
    logits = jnp.where(keep, logits, -jnp.inf)
  return logits


def next_token(logits, rng, settings):
  """(batch, vocab) logits -> (batch,) ids: argmax at temperature 0, else a filtered sample."""
  if settings.temperature == 0:
    return jnp.argmax(logits, -1).astype(jnp.int32)
  logits = filter_logits(logits / settings.temperature, settings.top_k, settings.top_p)
  return jax.random.categorical(rng, logits).astype(jnp.int32)


def _stops(tokens, stop_ids):
  if not stop_ids:
    return jnp.zeros(tokens.shape, bool)
  return jnp.isin(tokens, jnp.asarray(stop_ids, jnp.int32))


# --- the model's side: prefill and step, as (tokens -> logits, cache) functions ---------------

def _left_pad(prompts, length):
  """(tokens, segment_ids, positions, lengths) of prompts right-aligned in `length` slots."""
  batch = len(prompts)
  tokens = np.zeros((batch, length), np.int32)
  segments = np.zeros((batch, length), np.int32)
  positions = np.zeros((batch, length), np.int32)
  for row, ids in enumerate(prompts):
    start = length - len(ids)
    tokens[row, start:] = ids
    segments[row, start:] = 1
    positions[row, start:] = np.arange(len(ids))
  return tokens, segments, positions, np.asarray([len(p) for p in prompts], np.int32)


def _right_pad(rows, length):
  """(tokens, segment_ids) of encoder-decoder sources, left-aligned and padded with 0."""
  tokens = np.zeros((len(rows), length), np.int32)
  for row, ids in enumerate(rows):
    tokens[row, :len(ids)] = ids
  lengths = np.asarray([len(r) for r in rows])
  return tokens, (np.arange(length) < lengths[:, None]).astype(np.int32)


def cache_spec(model, batch_size, cache_len, encoder_decoder):
  """The abstract `cache` collection for `batch_size` rows of `cache_len` slots (logically
  partitioned boxes, so the cache shards by the same rules as everything else)."""
  ones = jnp.ones((batch_size, cache_len), jnp.int32)
  batch = {"inputs": ones}
  if encoder_decoder:
    batch = {"inputs": ones[:, :1], "decoder_inputs": ones}
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch, decode=True))
  return variables["cache"]


@functools.lru_cache(maxsize=16)
def _compiled(model, settings, batch_size, prompt_len, source_len, mesh, rules):
  """The jitted search for these shapes; cached, so repeated calls do not recompile."""
  encoder_decoder = model.cfg.family == "encoder_decoder"
  cache_len = (0 if encoder_decoder else prompt_len) + settings.max_new_tokens + 1
  beams = settings.num_beams
  # Sized for the prompts; beam search repeats each row `beams` times after the prefill.
  boxed = cache_spec(model, batch_size, cache_len, encoder_decoder)
  cache_shardings = None
  if mesh is not None:
    cache_shardings = parallel.logical_to_sharding(parallel.logical_specs(boxed), mesh, rules)
  cache_shapes = nn.unbox(boxed)

  def shard(cache):
    if cache_shardings is None:
      return cache
    return jax.lax.with_sharding_constraint(cache, cache_shardings)

  def empty_cache():
    return shard(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache_shapes))

  def apply(params, cache, batch):
    outputs, variables = model.apply({"params": params, "cache": cache}, batch, decode=True,
                                     mutable=["cache"])
    return outputs, variables["cache"]

  def prefill(params, prompt):
    """The first step's (batch, vocab) logits, the cache holding the prompts, and the batch
    fields every later step repeats (the encoder's output for encoder-decoders)."""
    if encoder_decoder:
      start = jnp.full((prompt["inputs"].shape[0], 1), settings.start_id, jnp.int32)
      batch = {"inputs": prompt["inputs"], "segment_ids": prompt["segment_ids"],
               "decoder_inputs": start, "decoder_segment_ids": jnp.ones_like(start),
               "decoder_positions": jnp.zeros_like(start)}
      outputs, cache = apply(params, prompt["cache"], batch)
      fixed = {"inputs": prompt["inputs"], "segment_ids": prompt["segment_ids"],
               "encoded": outputs["encoded"]}
      return outputs["lm"][:, -1], cache, fixed, jnp.ones_like(prompt["lengths"])
    batch = {k: prompt[k] for k in ("inputs", "segment_ids", "positions")}
    outputs, cache = apply(params, prompt["cache"], batch)
    return outputs["lm"][:, -1], cache, {}, prompt["lengths"]

  def step(params, cache, fixed, tokens, positions):
    """(batch,) tokens at (batch,) positions -> ((batch, vocab) logits, cache)."""
    tokens, positions = tokens[:, None], positions[:, None].astype(jnp.int32)
    ones = jnp.ones_like(tokens)
    if encoder_decoder:
      batch = dict(fixed, decoder_inputs=tokens, decoder_segment_ids=ones,
                   decoder_positions=positions)
    else:
      batch = {"inputs": tokens, "segment_ids": ones, "positions": positions}
    outputs, cache = apply(params, cache, batch)
    return outputs["lm"][:, -1], cache

  def sample_search(params, prompt, rng):
    logits, cache, fixed, next_position = prefill(params, dict(prompt, cache=empty_cache()))
    batch = logits.shape[0]
    out = jnp.zeros((batch, settings.max_new_tokens), jnp.int32)
    done = jnp.zeros((batch,), bool)

    def cond(state):
      t, _, _, _, done = state
      return (t < settings.max_new_tokens) & ~jnp.all(done)

    def body(state):
      t, logits, cache, out, done = state
      token = next_token(logits, jax.random.fold_in(rng, t), settings)
      token = jnp.where(done, 0, token)
      out = out.at[:, t].set(token)
      done = done | _stops(token, settings.stop_ids)
      logits, cache = step(params, cache, fixed, token, next_position + t)
      return t + 1, logits, cache, out, done

    t, _, _, out, done = jax.lax.while_loop(cond, body, (0, logits, cache, out, done))
    stopped = _stops(out, settings.stop_ids) & (jnp.arange(out.shape[1]) < t)
    lengths = jnp.where(stopped.any(1), jnp.argmax(stopped, 1), t)
    return out, lengths, t

  def beam_search(params, prompt, rng):
    del rng
    logits, cache, fixed, next_position = prefill(params, dict(prompt, cache=empty_cache()))
    batch, vocab = logits.shape
    # Every row of the cache (and of the fixed fields) becomes `beams` rows.
    expand = lambda x: jnp.repeat(x, beams, axis=0)
    cache = shard(_map_cache_rows(lambda x, axis: jnp.repeat(x, beams, axis=axis), cache))
    fixed = jax.tree.map(expand, fixed)
    next_position = expand(next_position)
    logits = expand(logits)
    steps = settings.max_new_tokens
    alive_seqs = jnp.zeros((batch, beams, steps), jnp.int32)
    # Only beam 0 is live at first, so the first step picks `beams` different tokens.
    alive_logp = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (beams - 1)), (batch, 1))
    done_seqs = jnp.zeros((batch, beams, steps), jnp.int32)
    done_scores = jnp.full((batch, beams), NEG_INF)
    done_lengths = jnp.zeros((batch, beams), jnp.int32)
    penalty = lambda length: jnp.asarray(length, jnp.float32) ** settings.length_penalty

    def cond(state):
      t, _, _, _, alive_logp, _, done_scores, _ = state
      # Stop once no live beam can still beat the worst kept finished one.
      best_possible = alive_logp[:, 0] / (penalty(steps) if settings.length_penalty > 0
                                          else penalty(t + 1))
      hopeless = jnp.all(best_possible < done_scores[:, -1])
      return (t < steps) & ~hopeless

    def body(state):
      t, logits, cache, alive_seqs, alive_logp, done_seqs, done_scores, done_lengths = state
      logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, beams, vocab)
      logp = (logp + alive_logp[..., None]).reshape(batch, beams * vocab)
      top_logp, top_index = jax.lax.top_k(logp, 2 * beams)
      source_beam, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
      seqs = jnp.take_along_axis(alive_seqs, source_beam[..., None], axis=1)
      seqs = seqs.at[:, :, t].set(token)
      stopped = _stops(token, settings.stop_ids)
      # Finished: merge the candidates that stopped with those kept so far.
      length = t + jnp.where(stopped, 0, 1)   # the stop token itself is not counted
      scores = jnp.where(stopped, top_logp / penalty(jnp.maximum(length, 1)), NEG_INF)
      all_scores = jnp.concatenate([done_scores, scores], 1)
      keep = jax.lax.top_k(all_scores, beams)[1]
      done_scores = jnp.take_along_axis(all_scores, keep, 1)
      done_seqs = jnp.take_along_axis(jnp.concatenate([done_seqs, seqs], 1), keep[..., None], 1)
      done_lengths = jnp.take_along_axis(
          jnp.concatenate([done_lengths, jnp.broadcast_to(length, stopped.shape)], 1), keep, 1)
      # Alive: the best candidates that did not stop.
      live_logp = jnp.where(stopped, NEG_INF, top_logp)
      live_logp, pick = jax.lax.top_k(live_logp, beams)
      alive_seqs = jnp.take_along_axis(seqs, pick[..., None], 1)
      parent = jnp.take_along_axis(source_beam, pick, 1)            # (batch, beams)
      rows = (jnp.arange(batch)[:, None] * beams + parent).reshape(-1)
      cache = _map_cache_rows(lambda x, axis: jnp.take(x, rows, axis=axis), cache)
      tokens = jnp.take_along_axis(token, pick, 1).reshape(-1)
      logits, cache = step(params, cache, fixed, tokens, next_position + t)
      return (t + 1, logits, cache, alive_seqs, live_logp, done_seqs, done_scores, done_lengths)

    state = (0, logits, cache, alive_seqs, alive_logp, done_seqs, done_scores, done_lengths)
    t, _, _, alive_seqs, alive_logp, done_seqs, done_scores, done_lengths = jax.lax.while_loop(
        cond, body, state)
    # Rows that finished no beam answer with their best live one.
    alive_score = alive_logp[:, 0] / penalty(jnp.maximum(t, 1))
    use_done = done_scores[:, 0] >= alive_score
    best = jnp.where(use_done[:, None], done_seqs[:, 0], alive_seqs[:, 0])
    lengths = jnp.where(use_done, done_lengths[:, 0], t)
    return best, lengths, t

  search = beam_search if beams > 1 else sample_search
  if mesh is None:
    return jax.jit(search)
  # The few output ids on every device: each process reads all of them (on several processes a
  # batch-sharded output would leave each with only its rows, which device_get cannot fetch).
  return jax.jit(parallel.scoped(search, mesh, rules), out_shardings=parallel.replicated(mesh))


def _map_cache_rows(fn, cache):
  """fn(array, batch axis) on every cache array with rows; scanned layers stack their caches
  as (layers, batch, ...), the slot index is a scalar."""
  def apply(path, x):
    if x.ndim == 0:
      return x
    scanned = any(getattr(k, "key", None) == "layers" for k in path)
    return fn(x, 1 if scanned else 0)
  return jax.tree_util.tree_map_with_path(apply, cache)


def generate(model, params, prompts, settings, mesh=None, rules=None, timed=False, pad_to=0):
  """New token ids for each prompt (a list of ids: the decoder's prefix, or an encoder-decoder's
  source), without the stop token; and the number of decoding steps run. `timed`: compile ahead
  of time and also return the seconds the decoding itself took. Prompts are padded to a multiple
  of 8 (fewer shapes to compile), or to `pad_to` if that is longer (one shape for many calls)."""
  check(settings)
  batch = len(prompts)
  length = max(-(-max(map(len, prompts)) // 8) * 8, pad_to)
  if model.cfg.family == "encoder_decoder":
    tokens, segments = _right_pad(prompts, length)
    prompt = {"inputs": tokens, "segment_ids": segments,
              "lengths": np.ones(batch, np.int32)}
    prompt_len, source_len = 0, length
  else:
    prompt_len = length
    tokens, segments, positions, lengths = _left_pad(prompts, prompt_len)
    prompt = {"inputs": tokens, "segment_ids": segments, "positions": positions,
              "lengths": lengths}
    source_len = 0
  search = _compiled(model, settings, batch, prompt_len, source_len, mesh, rules)
  args = (params, prompt, jax.random.PRNGKey(settings.seed))
  if timed:
    search = search.lower(*args).compile()
    start = time.perf_counter()
  out, lengths, steps = jax.device_get(search(*args))
  outputs = [[int(t) for t in row[:n]] for row, n in zip(out, lengths)]
  if timed:
    return outputs, int(steps), time.perf_counter() - start
  return outputs, int(steps)
