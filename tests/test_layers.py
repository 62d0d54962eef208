"""Attention, masks, RoPE and the whole Transformer against naive references and invariants."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm.base_config import base_config
from llm.models import build_model
from llm.models.layers import Attention, ModelConfig, apply_rope, attention_mask
from llm.models.layers import dot_product_attention_with_dropout


# --- naive references (numpy, float64, explicit loops) -----------------------------------------

def rope_reference(x, positions, base=10000.0):
  """(batch, length, heads, dim): pair (x[i], x[i + dim/2]) turns by position * base^(-2i/dim)."""
  half = x.shape[-1] // 2
  z = x[..., :half] + 1j * x[..., half:]
  theta = base ** (-2.0 * np.arange(half) / x.shape[-1])
  z = z * np.exp(1j * positions[:, :, None, None] * theta)
  return np.concatenate([z.real, z.imag], -1)


def attention_reference(q, k, v, segment_ids, causal):
  """q (batch, length, heads, dim), k/v (batch, length, kv_heads, dim); kv head = head // groups."""
  batch, length, heads, dim = q.shape
  groups = heads // k.shape[2]
  out = np.zeros(q.shape)
  for b in range(batch):
    for i in range(length):
      keys = [j for j in range(length)
              if segment_ids[b, j] != 0 and segment_ids[b, j] == segment_ids[b, i]
              and (j <= i or not causal)]
      if not keys:
        continue  # a padding query: nothing to attend to, output is arbitrary
      for h in range(heads):
        scores = np.array([q[b, i, h] @ k[b, j, h // groups] for j in keys]) / np.sqrt(dim)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        out[b, i, h] = sum(p * v[b, j, h // groups] for p, j in zip(probs, keys))
  return out


def attention_module_reference(params, x, segment_ids, positions, cfg):
  """Attention recomputed from the module's params with the naive reference."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  proj = lambda name: np.einsum("bte,ehd->bthd", x, p[name]["kernel"]) + p[name]["bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  if cfg.position == "rope":
    q, k = rope_reference(q, positions, cfg.rope_base), rope_reference(k, positions, cfg.rope_base)
  out = attention_reference(q, k, v, segment_ids, cfg.causal)
  return np.einsum("bthd,hde->bte", out, p["out"]["kernel"]) + p["out"]["bias"]


def positions_of(segment_ids):
  """Positions that restart at 0 at the start of every segment."""
  positions = np.zeros_like(segment_ids)
  for b, row in enumerate(segment_ids):
    for t in range(1, len(row)):
      positions[b, t] = positions[b, t - 1] + 1 if row[t] == row[t - 1] else 0
  return positions


# --- Attention ---------------------------------------------------------------------------------

FULL = [[1] * 8, [1] * 8]
PADDED = [[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
PACKED = [[1, 1, 1, 2, 2, 3, 3, 0], [1, 2, 2, 2, 2, 2, 0, 0]]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("segment_ids,num_kv_heads,position", [
    (FULL, 0, "learned"), (PADDED, 0, "learned"), (PACKED, 0, "learned"), (PACKED, 2, "learned"),
    (PACKED, 0, "rope"), (PADDED, 2, "rope"),
], ids=["full", "padded", "packed", "packed-gqa", "packed-rope", "padded-gqa-rope"])
def test_attention_matches_reference(causal, segment_ids, num_kv_heads, position):
  cfg = ModelConfig(vocab_size=10, embed_dim=16, num_heads=4, num_kv_heads=num_kv_heads,
                    position=position, causal=causal)
  segment_ids = np.array(segment_ids)
  positions = positions_of(segment_ids)
  x = np.random.default_rng(0).normal(size=(2, 8, 16)).astype(np.float32)
  mask = attention_mask(jnp.asarray(segment_ids), causal)
  model = Attention(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), x, mask, positions, False))["params"]
  # Random biases too (they start at zero), so every parameter matters.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(
      tree, [0.3 * jax.random.normal(key, a.shape) for key, a in zip(keys, leaves)])
  assert params["key"]["kernel"].shape == (16, cfg.kv_heads, 4)

  out = np.asarray(model.apply({"params": params}, x, mask, positions, False))
  expected = attention_module_reference(params, x.astype(np.float64), segment_ids, positions, cfg)
  real = segment_ids != 0
  np.testing.assert_allclose(out[real], expected[real], atol=1e-5, rtol=1e-5)
  assert np.isfinite(out).all()  # padding queries are arbitrary but must not poison later layers


def test_attention_mask_hand_computed():
  segment_ids = jnp.array([[1, 1, 2, 0]])
  causal = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
  bidirectional = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(attention_mask(segment_ids, True), causal[None, None])
  np.testing.assert_array_equal(attention_mask(segment_ids, False), bidirectional[None, None])


def _random_qkv(heads=4, kv_heads=2, length=8, dim=4):
  rng = np.random.default_rng(1)
  q = rng.normal(size=(2, length, heads, dim))
  k, v = rng.normal(size=(2, 2, length, kv_heads, dim))
  return q, k, v


def test_dropout_attention_rate_zero_matches_reference():
  q, k, v = _random_qkv()
  segment_ids = np.array(PACKED)
  mask = attention_mask(jnp.asarray(segment_ids), True)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  out = dot_product_attention_with_dropout(f32(q), f32(k), f32(v), mask, jax.random.PRNGKey(0), 0.0)
  real = segment_ids != 0
  expected = attention_reference(q, k, v, segment_ids, True)
  np.testing.assert_allclose(np.asarray(out)[real], expected[real], atol=1e-5)


def test_dropout_attention_is_unbiased():
  # Inverted dropout: averaged over many masks, the output is the dropout-free attention.
  q, k, v = _random_qkv(heads=2, kv_heads=1, length=4)
  segment_ids = np.ones((2, 4), np.int32)
  mask = attention_mask(jnp.asarray(segment_ids), False)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  run = lambda key: dot_product_attention_with_dropout(f32(q), f32(k), f32(v), mask, key, 0.5)
  outs = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(0), 4000))
  expected = attention_reference(q, k, v, segment_ids, False)
  np.testing.assert_allclose(outs.mean(0), expected, atol=0.1)
  assert float(outs.std(0).min()) > 0.01  # ...and the masks do vary


# --- RoPE --------------------------------------------------------------------------------------

def test_rope_matches_complex_rotation():
  x = np.random.default_rng(2).normal(size=(2, 5, 3, 8))
  positions = np.array([[0, 1, 2, 3, 4], [7, 3, 0, 100, 12]])
  out = apply_rope(jnp.asarray(x, jnp.float32), jnp.asarray(positions), 10000.0)
  np.testing.assert_allclose(out, rope_reference(x, positions), atol=1e-4)


def test_rope_scores_depend_only_on_offset_and_norms_are_kept():
  rng = np.random.default_rng(3)
  q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32) for _ in range(2))
  rotate = lambda x, pos: apply_rope(x, jnp.array([[pos]]), 10000.0)[0, 0, 0]
  score = lambda m, n: float(rotate(q, m) @ rotate(k, n))
  for m, n in [(0, 0), (5, 2), (2, 5), (40, 31)]:
    for shift in (1, 17, 250):
      np.testing.assert_allclose(score(m + shift, n + shift), score(m, n), atol=1e-4)
  assert abs(score(5, 2) - score(2, 5)) > 1e-3  # the offset's sign matters, not only its size
  np.testing.assert_allclose(rotate(q, 0), q[0, 0, 0], atol=1e-6)
  for pos in (1, 9, 1000):
    np.testing.assert_allclose(jnp.linalg.norm(rotate(q, pos)), jnp.linalg.norm(q), rtol=1e-5)


# --- the whole model ---------------------------------------------------------------------------

VOCAB = 100
LENGTH = 16


def small_config(**model):
  c = base_config()
  c.vocab_size = VOCAB
  c.seq_len = LENGTH
  c.model.update(num_layers=2, embed_dim=32, num_heads=4, mlp_dim=64, max_len=LENGTH,
                 dropout_rate=0.0, attention_dropout_rate=0.0)
  c.model.update(model)
  return c


def encoder_config(**model):
  return small_config(causal=False, norm="post", type_vocab_size=2, heads=("mlm", "nsp"), **model)


def init_apply(config, seed=0):
  """(params, apply(batch) -> outputs as numpy) for the model the config names."""
  model = build_model(config)
  example = {"inputs": np.ones((1, LENGTH), np.int32)}
  params = nn.unbox(model.init(jax.random.PRNGKey(seed), example))["params"]
  return params, lambda batch, p=params: jax.tree.map(np.asarray, model.apply({"params": p}, batch))


def packed_batch(lengths, seed=0):
  """One row of documents with the given lengths, then padding; positions restart per document."""
  segment_ids = np.zeros((1, LENGTH), np.int32)
  start = 0
  for s, n in enumerate(lengths):
    segment_ids[0, start:start + n] = s + 1
    start += n
  tokens = np.random.default_rng(seed).integers(1, VOCAB, (1, LENGTH)).astype(np.int32)
  tokens[segment_ids == 0] = 0
  return {"inputs": tokens, "segment_ids": segment_ids, "positions": positions_of(segment_ids),
          "token_types": (segment_ids == 2).astype(np.int32)}


def _changed(batch, where, seed):
  tokens = batch["inputs"].copy()
  tokens[where] = np.random.default_rng(seed).integers(1, VOCAB, int(where.sum()))
  return {**batch, "inputs": tokens}


@pytest.mark.parametrize("config", [small_config(), encoder_config()], ids=["decoder", "encoder"])
def test_packed_documents_do_not_see_each_other(config):
  _, apply = init_apply(config)
  batch = packed_batch([6, 6])
  segment_ids = batch["segment_ids"]
  before = apply(batch)
  names = [name for name in before if name != "nsp"]   # per-token outputs
  for changed, kept in [(2, 1), (1, 2)]:
    # Change one document's tokens and the padding; the other document must not notice at all.
    after = apply(_changed(batch, (segment_ids == changed) | (segment_ids == 0), seed=changed))
    for name in names:
      np.testing.assert_array_equal(after[name][segment_ids == kept],
                                    before[name][segment_ids == kept], err_msg=name)
      assert not np.allclose(after[name][segment_ids == changed],
                             before[name][segment_ids == changed]), name
  if "nsp" in before:  # pooled from position 0, which belongs to the first document
    after = apply(_changed(batch, segment_ids == 2, seed=3))
    np.testing.assert_array_equal(after["nsp"], before["nsp"])


def test_causal_model_does_not_see_the_future():
  _, apply = init_apply(small_config())
  batch = packed_batch([LENGTH])
  before = apply(batch)["lm"]
  for t in (3, 10, LENGTH - 1):
    tokens = batch["inputs"].copy()
    tokens[0, t] = tokens[0, t] % (VOCAB - 1) + 1
    after = apply({**batch, "inputs": tokens})["lm"]
    np.testing.assert_array_equal(after[0, :t], before[0, :t])
    assert not np.allclose(after[0, t:], before[0, t:])


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
def test_packed_document_equals_document_alone(position, causal):
  config = small_config(position=position, causal=causal, heads=("lm",))
  _, apply = init_apply(config)
  packed = packed_batch([5, 7])
  doc_b = packed["segment_ids"][0] == 2
  alone = packed_batch([7])
  alone["inputs"][0, :7] = packed["inputs"][0, doc_b]
  packed_logits = apply(packed)["lm"][0, doc_b]
  alone_logits = apply(alone)["lm"][0, :7]
  np.testing.assert_allclose(packed_logits, alone_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
def test_position_and_norm_variants_run(position, norm):
  _, apply = init_apply(small_config(position=position, norm=norm))
  outputs = apply({"inputs": packed_batch([LENGTH])["inputs"]})  # default segments and positions
  assert outputs["lm"].shape == (1, LENGTH, VOCAB)
  assert outputs["hidden"].shape == (1, LENGTH, 32)
  assert np.isfinite(outputs["lm"]).all()


def test_bfloat16_compute_keeps_float32_params():
  params, apply32 = init_apply(small_config())
  params16, apply16 = init_apply(small_config(dtype="bfloat16"))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params16))
  batch = packed_batch([10])
  logits16 = apply16(batch, params)["lm"]  # same weights, only the compute dtype differs
  logits32 = apply32(batch)["lm"]
  assert logits16.dtype == jnp.bfloat16
  scale = np.abs(logits32).max()
  np.testing.assert_allclose(logits16.astype(np.float32), logits32, atol=0.02 * scale)
  assert np.abs(logits16.astype(np.float32) - logits32).max() > 0  # it really ran in bfloat16
