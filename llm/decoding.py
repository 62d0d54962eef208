"""Decoding: fill a KV cache with the prompts (prefill), then one token a step, the whole loop one
jitted `lax.while_loop` with the weights as arguments.

The searches run over the prefill and one-token step a family provides (llm/models/generation.py:
decoders read left-padded prompts, encoder-decoders encode their sources once), so they never ask
which family they decode: greedy (temperature 0), sampling with temperature / top-k / top-p
(seeded), or beam search with a length penalty (score = log-probability / length **
length_penalty, as in Hugging Face). A sequence ends at any of `stop_ids`, which is not returned.
"""
import dataclasses
import functools
import math
import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm import parallel
from llm.data.tokenizer import BOS
from llm.models.generation import DECODING

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
  if not 0 <= s.seed < 2**32:   # as config.seed: what jax.random.PRNGKey takes
    raise ValueError(f"--sample_seed={s.seed} must be in [0, {2**32})")
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


# --- search over a family's prefill and step (llm/models/generation.py) -----------------------

def sample_search(first, step, settings, rng):
  """Greedy or sampled decoding from `first` = (logits, cache, context, next positions) of the
  prefill; step(cache, context, tokens, positions) -> (logits, cache). Returns (batch, steps)
  tokens, each row's length without its stop token, and the steps run."""
  logits, cache, context, next_position = first
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
    logits, cache = step(cache, context, token, next_position + t)
    return t + 1, logits, cache, out, done

  t, _, _, out, done = jax.lax.while_loop(cond, body, (0, logits, cache, out, done))
  stopped = _stops(out, settings.stop_ids) & (jnp.arange(out.shape[1]) < t)
  lengths = jnp.where(stopped.any(1), jnp.argmax(stopped, 1), t)
  return out, lengths, t


class Beams(NamedTuple):
  """Beam search's loop state: `beams` live hypotheses per row (their cache rows follow them)
  and the `beams` best finished ones, each with its length-penalised score."""
  t: jax.Array                # steps taken
  logits: jax.Array           # (batch * beams, vocab): the live beams' next-token logits
  cache: dict
  alive_seqs: jax.Array       # (batch, beams, steps)
  alive_logp: jax.Array       # (batch, beams), best first
  done_seqs: jax.Array        # (batch, beams, steps)
  done_scores: jax.Array      # (batch, beams), best first; NEG_INF where none yet
  done_lengths: jax.Array     # (batch, beams)


def _penalty(length, settings):
  return jnp.asarray(length, jnp.float32) ** settings.length_penalty


def _beam_step(beams, step, context, next_position, settings):
  """One step: extend every live beam by every token, keep the best `num_beams` that stopped
  (among the finished ones so far) and the best `num_beams` that did not."""
  b = beams
  batch, n = b.alive_logp.shape
  vocab = b.logits.shape[-1]
  logp = jax.nn.log_softmax(b.logits.astype(jnp.float32)).reshape(batch, n, vocab)
  logp = (logp + b.alive_logp[..., None]).reshape(batch, n * vocab)
  top_logp, top_index = jax.lax.top_k(logp, 2 * n)
  source_beam, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
  seqs = jnp.take_along_axis(b.alive_seqs, source_beam[..., None], axis=1)
  seqs = seqs.at[:, :, b.t].set(token)
  stopped = _stops(token, settings.stop_ids)
  # Finished: merge the candidates that stopped with those kept so far.
  length = b.t + jnp.where(stopped, 0, 1)   # the stop token itself is not counted
  scores = jnp.where(stopped, top_logp / _penalty(jnp.maximum(length, 1), settings), NEG_INF)
  all_scores = jnp.concatenate([b.done_scores, scores], 1)
  keep = jax.lax.top_k(all_scores, n)[1]
  done_lengths = jnp.concatenate([b.done_lengths, jnp.broadcast_to(length, stopped.shape)], 1)
  # Alive: the best candidates that did not stop; their cache rows are their parents'.
  live_logp, pick = jax.lax.top_k(jnp.where(stopped, NEG_INF, top_logp), n)
  parent = jnp.take_along_axis(source_beam, pick, 1)            # (batch, beams)
  rows = (jnp.arange(batch)[:, None] * n + parent).reshape(-1)
  cache = _map_cache_rows(lambda x, axis: jnp.take(x, rows, axis=axis), b.cache)
  tokens = jnp.take_along_axis(token, pick, 1).reshape(-1)
  logits, cache = step(cache, context, tokens, next_position + b.t)
  return Beams(
      t=b.t + 1, logits=logits, cache=cache,
      alive_seqs=jnp.take_along_axis(seqs, pick[..., None], 1), alive_logp=live_logp,
      done_seqs=jnp.take_along_axis(jnp.concatenate([b.done_seqs, seqs], 1), keep[..., None], 1),
      done_scores=jnp.take_along_axis(all_scores, keep, 1),
      done_lengths=jnp.take_along_axis(done_lengths, keep, 1))


def beam_search(first, step, settings, shard=lambda cache: cache):
  """Beam search from the prefill's `first` (as sample_search); `shard` constrains the cache
  once its rows are repeated per beam. Returns each row's best sequence, its length and the
  steps run."""
  logits, cache, context, next_position = first
  batch, n, steps = logits.shape[0], settings.num_beams, settings.max_new_tokens
  # Every row of the cache, the context and the positions becomes `num_beams` rows.
  repeat = lambda x: jnp.repeat(x, n, axis=0)
  cache = shard(_map_cache_rows(lambda x, axis: jnp.repeat(x, n, axis=axis), cache))
  context, next_position = jax.tree.map(repeat, context), repeat(next_position)
  beams = Beams(
      t=jnp.asarray(0), logits=repeat(logits), cache=cache,
      alive_seqs=jnp.zeros((batch, n, steps), jnp.int32),
      # Only beam 0 is live at first, so the first step picks `num_beams` different tokens.
      alive_logp=jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (n - 1)), (batch, 1)),
      done_seqs=jnp.zeros((batch, n, steps), jnp.int32),
      done_scores=jnp.full((batch, n), NEG_INF),
      done_lengths=jnp.zeros((batch, n), jnp.int32))

  def going(b):
    # Stop once no live beam can still beat the worst kept finished one.
    best_possible = b.alive_logp[:, 0] / _penalty(
        steps if settings.length_penalty > 0 else b.t + 1, settings)
    return (b.t < steps) & ~jnp.all(best_possible < b.done_scores[:, -1])

  b = jax.lax.while_loop(going, lambda b: _beam_step(b, step, context, next_position, settings),
                         beams)
  # Rows that finished no beam answer with their best live one.
  alive_score = b.alive_logp[:, 0] / _penalty(jnp.maximum(b.t, 1), settings)
  use_done = b.done_scores[:, 0] >= alive_score
  best = jnp.where(use_done[:, None], b.done_seqs[:, 0], b.alive_seqs[:, 0])
  return best, jnp.where(use_done, b.done_lengths[:, 0], b.t), b.t


def _map_cache_rows(fn, cache):
  """fn(array, batch axis) on every cache array with rows; scanned layers stack their caches
  as (layers, batch, ...), the slot index is a scalar."""
  def apply(path, x):
    if x.ndim == 0:
      return x
    scanned = any(getattr(k, "key", None) == "layers" for k in path)
    return fn(x, 1 if scanned else 0)
  return jax.tree_util.tree_map_with_path(apply, cache)


# --- the model under jit ---------------------------------------------------------------------

def cache_spec(model, batch_size, cache_len):
  """The abstract `cache` collection for `batch_size` rows of `cache_len` slots (logically
  partitioned boxes, so the cache shards by the same rules as everything else)."""
  batch = DECODING[model.cfg.family].cache_batch(jnp.ones((batch_size, cache_len), jnp.int32))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch, decode=True))
  return variables["cache"]


@functools.lru_cache(maxsize=16)
def _compiled(model, settings, batch_size, prompt_len, mesh, rules):
  """The jitted search for these shapes; cached, so repeated calls do not recompile."""
  family = DECODING[model.cfg.family]
  # Sized for the prompts; beam search repeats each row `num_beams` times after the prefill.
  boxed = cache_spec(model, batch_size, family.cache_len(prompt_len, settings.max_new_tokens))
  cache_shapes, shard = nn.unbox(boxed), lambda cache: cache
  if mesh is not None:
    shardings = parallel.logical_to_sharding(parallel.logical_specs(boxed), mesh, rules)
    shard = lambda cache: jax.lax.with_sharding_constraint(cache, shardings)

  def search(params, prompt, rng):
    def apply(cache, batch):
      outputs, variables = model.apply({"params": params, "cache": cache}, batch, decode=True,
                                       mutable=["cache"])
      return outputs, variables["cache"]
    cache = shard(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache_shapes))
    first = family.prefill(apply, cache, prompt, settings.start_id)
    step = functools.partial(family.step, apply)
    if settings.num_beams > 1:
      return beam_search(first, step, settings, shard)
    return sample_search(first, step, settings, rng)

  if mesh is None:
    return jax.jit(search)
  # The few output ids on every device: each process reads all of them (on several processes a
  # batch-sharded output would leave each with only its rows, which device_get cannot fetch).
  return jax.jit(parallel.scoped(search, mesh, rules), out_shardings=parallel.replicated(mesh))


def generate(model, params, prompts, settings, mesh=None, rules=None, timed=False, pad_to=0):
  """New token ids for each prompt (a list of ids: the decoder's prefix, or an encoder-decoder's
  source), without the stop token; and the number of decoding steps run. `timed`: compile ahead
  of time and also return the seconds the decoding itself took. Prompts are padded to a multiple
  of 8 (fewer shapes to compile), or to `pad_to` if that is longer (one shape for many calls)."""
  check(settings)
  length = max(-(-max(map(len, prompts)) // 8) * 8, pad_to)
  prompt = DECODING[model.cfg.family].pad(prompts, length)
  search = _compiled(model, settings, len(prompts), length, mesh, rules)
  args = (params, prompt, jax.random.PRNGKey(settings.seed))
  if timed:
    search = search.lower(*args).compile()
    start = time.perf_counter()
  out, lengths, steps = jax.device_get(search(*args))
  outputs = [[int(t) for t in row[:n]] for row, n in zip(out, lengths)]
  if timed:
    return outputs, int(steps), time.perf_counter() - start
  return outputs, int(steps)
