"""The decoding engine: KV-cache steps equal full forward passes, search against independent
loops (greedy, exhaustive enumeration for beams), batching, and the sampling filters."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm import decoding

from helpers import model_and_params

VOCAB = 40


def full_logits(model, params, rows, source=None, length=24):
  """Next-token logits at every position from one forward pass (no cache) over each row of
  `rows`, padded to `length`: the model is causal, so the padding never reaches them."""
  rows = [rows] if isinstance(rows[0], (int, np.integer)) else rows
  ids = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
  segments = (np.arange(length) < np.asarray([len(r) for r in rows])[:, None]).astype(np.int32)
  batch = {"inputs": ids, "segment_ids": segments}
  if source is not None:
    batch = {"inputs": np.asarray([source] * len(rows), np.int32), "decoder_inputs": ids,
             "decoder_segment_ids": segments}
  out = np.asarray(forward(model, params, batch))
  return out[0, :len(rows[0])] if len(rows) == 1 else out


_FORWARD = {}


def forward(model, params, batch):
  """One jitted forward pass per model (shapes are fixed), so references compile once."""
  if model not in _FORWARD:
    _FORWARD[model] = jax.jit(lambda p, b: model.apply({"params": p}, b)["lm"])
  return _FORWARD[model](params, batch)


def greedy_reference(model, params, prompt, steps, source=None):
  """Greedy decoding by re-running the whole prefix at every step."""
  ids = list(prompt) if source is None else [2]
  for _ in range(steps):
    ids.append(int(np.argmax(full_logits(model, params, ids, source)[-1])))
  return ids[len(prompt):] if source is None else ids[1:]


@pytest.mark.parametrize("family,scan,position", [
    ("llama", True, "rope"), ("decoder", False, "alibi"), ("t5", False, "relative"),
    ("transformer", True, "sinusoidal")])
def test_cached_steps_give_the_full_forward_logits(family, scan, position):
  model, params = model_and_params(family, scan, num_kv_heads=2 if family == "llama" else 0,
                                   position=position)
  encdec = model.cfg.family == "encoder_decoder"
  rng = np.random.default_rng(0)
  ids = [2] + list(rng.integers(4, VOCAB, 9))
  source = list(rng.integers(4, VOCAB, 7)) if encdec else None
  expected = full_logits(model, params, ids, source)
  prompt_len = 1 if encdec else 4
  cache_len = 12
  init_batch = {"inputs": jnp.ones((1, cache_len), jnp.int32)}
  if encdec:
    init_batch = {"inputs": jnp.ones((1, 1), jnp.int32),
                  "decoder_inputs": jnp.ones((1, cache_len), jnp.int32)}
  cache = jax.tree.map(jnp.zeros_like, nn.unbox(jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), init_batch, decode=True)))["cache"])
  @jax.jit
  def apply(cache, batch):
    out, variables = model.apply({"params": params, "cache": cache}, batch, decode=True,
                                 mutable=["cache"])
    return out["lm"][0], variables["cache"]
  def run(chunk, start):
    key = "decoder_inputs" if encdec else "inputs"
    batch = {key: jnp.asarray([chunk], jnp.int32),
             ("decoder_positions" if encdec else "positions"):
                 jnp.arange(start, start + len(chunk))[None]}
    if encdec:
      batch.update(inputs=jnp.asarray([source], jnp.int32))
    out, new_cache = apply(cache, batch)
    return np.asarray(out), new_cache
  got, cache = run(ids[:prompt_len], 0)
  np.testing.assert_allclose(got, expected[:prompt_len], atol=1e-5, rtol=1e-5)
  for t in range(prompt_len, len(ids)):
    got, cache = run(ids[t:t + 1], t)
    np.testing.assert_allclose(got[0], expected[t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["decoder", "llama", "t5"])
def test_greedy_matches_rerunning_the_prefix(family):
  model, params = model_and_params(family)
  prompt = [2, 7, 11, 5, 9]
  source = [5, 6, 7, 8] if family == "t5" else None
  settings = decoding.Settings(max_new_tokens=12)
  (got,), steps = decoding.generate(model, params, [source or prompt], settings)
  assert steps == 12
  assert got == greedy_reference(model, params, prompt, 12, source)


def test_prompts_of_different_lengths_batch_like_alone():
  model, params = model_and_params("llama", num_kv_heads=2)
  prompts = [[2, 5], [2, 7, 11, 5, 9, 30, 31], [2, 12, 13, 14]]
  for settings in (decoding.Settings(max_new_tokens=10),
                   decoding.Settings(max_new_tokens=10, num_beams=3, length_penalty=0.5)):
    together, _ = decoding.generate(model, params, prompts, settings)
    alone = [decoding.generate(model, params, [p], settings)[0][0] for p in prompts]
    assert together == alone


def test_stop_tokens_end_a_row_and_are_not_returned():
  model, params = model_and_params("decoder")
  free, _ = decoding.generate(model, params, [[2, 7, 11]], decoding.Settings(max_new_tokens=12))
  stop = free[0][4]
  (got,), _ = decoding.generate(model, params, [[2, 7, 11]],
                                decoding.Settings(max_new_tokens=12, stop_ids=(stop,)))
  assert got == free[0][:free[0].index(stop)]


def test_one_beam_is_greedy():
  model, params = model_and_params("decoder")
  prompt = [[2, 7, 11, 5]]
  greedy, _ = decoding.generate(model, params, prompt, decoding.Settings(max_new_tokens=10))
  for lp in (0.0, 1.0):
    beam, _ = decoding.generate(model, params, prompt, decoding.Settings(
        max_new_tokens=10, num_beams=1, length_penalty=lp))
    assert beam == greedy


def test_wide_beam_finds_the_best_sequence_by_enumeration():
  """With as many beams as sequences of the first two steps, beam search is exhaustive: it must
  return the highest-scoring of all vocab**3 continuations, scored independently."""
  vocab = 6
  model, params = model_and_params("decoder", vocab=vocab)
  prompt = [2, 4, 1]
  every = [list(seq) for seq in itertools.product(range(vocab), repeat=3)]
  logp = np.asarray(jax.nn.log_softmax(full_logits(model, params, [prompt + s for s in every],
                                                   length=8)))
  for lp, stop in ((0.0, ()), (1.0, (5,))):
    (got,), _ = decoding.generate(model, params, [prompt], decoding.Settings(
        max_new_tokens=3, num_beams=vocab ** 2, length_penalty=lp, stop_ids=stop))
    best, best_score = None, -np.inf
    for row, seq in zip(logp, every):
      if stop and stop[0] in seq:
        seq = seq[:seq.index(stop[0]) + 1]
      total = sum(float(row[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))
      length = len(seq) - (1 if stop and seq[-1] == stop[0] else 0)
      score = total / max(length, 1) ** lp
      if score > best_score + 1e-6:
        best, best_score = seq[:length], score
    assert got == best, (lp, got, best)


def test_filters_keep_exactly_the_top_k_and_the_nucleus():
  logits = jnp.log(jnp.asarray([[0.05, 0.4, 0.1, 0.3, 0.15]]))
  keep = lambda **kw: set(np.flatnonzero(np.isfinite(decoding.filter_logits(logits, **kw))[0]))
  assert keep(top_k=2, top_p=1.0) == {1, 3}
  assert keep(top_k=0, top_p=0.5) == {1, 3}          # 0.4 < 0.5, 0.4 + 0.3 >= 0.5
  assert keep(top_k=0, top_p=0.4) == {1}             # the best token alone holds 0.4
  assert keep(top_k=0, top_p=0.86) == {1, 3, 4, 2}
  assert keep(top_k=3, top_p=0.5) == {1, 3}


def test_sampling_stays_inside_the_filtered_set_and_follows_it():
  model, params = model_and_params("decoder")
  prompt = [[2, 7, 11]] * 64
  logits = full_logits(model, params, prompt[0])[-1]
  settings = decoding.Settings(max_new_tokens=1, temperature=1.0, top_k=3, seed=3)
  draws = [row[0] for row in decoding.generate(model, params, prompt, settings)[0]]
  top3 = set(np.argsort(-logits)[:3])
  assert set(draws) <= top3 and len(set(draws)) > 1
  nucleus = decoding.Settings(max_new_tokens=1, temperature=1.0, top_p=0.3, seed=4)
  allowed = set(np.flatnonzero(np.isfinite(decoding.filter_logits(jnp.asarray(logits[None]),
                                                                 0, 0.3))[0]))
  draws = [row[0] for row in decoding.generate(model, params, prompt, nucleus)[0]]
  assert set(draws) <= allowed
  again = [row[0] for row in decoding.generate(model, params, prompt, nucleus)[0]]
  assert draws == again   # seeded


@pytest.mark.parametrize("bad,message", [
    (dict(top_p=0.0), r"--top_p=0.0 must be in \(0, 1\]"),
    (dict(top_p=1.5), r"--top_p=1.5 must be in \(0, 1\]"),
    (dict(num_beams=2, temperature=0.7), "beam search, which does not sample"),
    (dict(top_k=5), "--temperature=0 is greedy"),
    (dict(max_new_tokens=0), "--max_new_tokens=0 must be positive"),
    (dict(temperature=-1.0), "must be a number >= 0"),
    (dict(temperature=float("nan")), "--temperature=nan must be a number >= 0"),
    (dict(temperature=float("inf")), "--temperature=inf must be a number >= 0"),
    (dict(num_beams=2, length_penalty=float("nan")), "--length_penalty=nan must be a finite"),
])
def test_contradictory_settings_are_named(bad, message):
  with pytest.raises(ValueError, match=message):
    decoding.check(decoding.Settings(**bad))
