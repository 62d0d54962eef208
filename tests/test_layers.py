"""Attention, masks, RoPE, norms, MLPs and the whole model against naive references and
invariants, in every family, with scanned and unscanned layers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm.models import build_model
from llm import convert
from llm.models import presets
from llm.models.config import ModelConfig
from llm.models.layers import Attention, Mlp, alibi_bias, alibi_slopes, apply_rope
from llm.models.layers import attention_mask, norm
from llm.models.layers import dot_product_attention_with_dropout

from helpers import tiny_model_config


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


def attention_module_reference(params, x, segment_ids, positions, cfg, causal):
  """Attention recomputed from the module's params with the naive reference."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  proj = lambda name: np.einsum("bte,ehd->bthd", x, p[name]["kernel"]) + p[name]["bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  if cfg.position == "rope":
    q, k = rope_reference(q, positions, cfg.rope_base), rope_reference(k, positions, cfg.rope_base)
  out = attention_reference(q, k, v, segment_ids, causal)
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
                    position=position)
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
  expected = attention_module_reference(params, x.astype(np.float64), segment_ids, positions, cfg,
                                        causal)
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
  c = tiny_model_config({}, VOCAB, LENGTH, **{"dropout_rate": 0.0, "attention_dropout_rate": 0.0,
                                               **model})
  c.seq_len = LENGTH
  return c


def encoder_config(**model):
  c = small_config(**{**presets.BERT, "dropout_rate": 0.0, "attention_dropout_rate": 0.0})
  c.update(objective="masked_lm")
  c.model.update(model)
  return c


def init_apply(config, seed=0, heads=None):
  """(params, apply(batch) -> outputs as numpy) for the model the config names."""
  model = build_model(config, heads)
  example = {"inputs": np.ones((1, LENGTH), np.int32)}
  if config.model.family == "encoder_decoder":
    example["decoder_inputs"] = example["inputs"]
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


@pytest.mark.parametrize("family", ["decoder", "encoder"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_packed_document_equals_document_alone(position, family):
  config = small_config(position=position, family=family)
  _, apply = init_apply(config, heads=("lm",))
  packed = packed_batch([5, 7])
  doc_b = packed["segment_ids"][0] == 2
  alone = packed_batch([7])
  alone["inputs"][0, :7] = packed["inputs"][0, doc_b]
  packed_logits = apply(packed)["lm"][0, doc_b]
  alone_logits = apply(alone)["lm"][0, :7]
  np.testing.assert_allclose(packed_logits, alone_logits, atol=1e-5, rtol=1e-5)


def test_alibi_slopes_and_bias_are_the_papers():
  """Press et al. 2022: slopes 2^-1 ... 2^-8 for 8 heads; for 6, the 4-head sequence then every
  other slope of the 8-head one (the paper's code); the bias is -slope x |query - key|."""
  assert alibi_slopes(8) == [2.0 ** -k for k in range(1, 9)]
  assert alibi_slopes(6) == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
  positions = np.array([[0, 1, 2, 0]])   # a second document starts at the last token
  bias = np.asarray(alibi_bias(2, positions, positions, jnp.float32))
  assert bias.shape == (1, 2, 4, 4)
  expected = -np.abs(positions[0][:, None] - positions[0][None, :])
  np.testing.assert_array_equal(bias[0, 0], expected * 2.0 ** -4)
  np.testing.assert_array_equal(bias[0, 1], expected * 2.0 ** -8)


def test_alibi_sees_distances_only():
  """Shifting every position by the same amount leaves an ALiBi model's logits as they are
  (a learned table's change): what lets it run past the lengths it was trained on."""
  batch = packed_batch([LENGTH])
  shifted = {**batch, "positions": batch["positions"] + 9}
  for position, same in (("alibi", True), ("learned", False)):
    config = small_config(position=position)
    config.model.max_len = LENGTH + 9   # room in the learned table for the shifted positions
    _, apply = init_apply(config)
    before, after = apply(batch)["lm"], apply(shifted)["lm"]
    assert np.isfinite(after).all()
    assert np.allclose(before, after, atol=1e-5) == same, position


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "none"])
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


# --- block library: norms, MLPs, biases --------------------------------------------------------

def test_rmsnorm_and_layernorm_match_numpy():
  x = np.random.default_rng(4).normal(size=(2, 3, 8)).astype(np.float32)
  for kind in ("rmsnorm", "layernorm"):
    cfg = ModelConfig(vocab_size=10, embed_dim=8, norm_kind=kind, layer_norm_eps=1e-5)
    layer = norm(cfg, "n")
    params = nn.unbox(layer.init(jax.random.PRNGKey(0), x))["params"]
    scale = np.random.default_rng(5).normal(size=8).astype(np.float32)
    params = dict(params, scale=scale)
    if kind == "rmsnorm":
      expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5) * scale
      assert set(params) == {"scale"}   # no bias
    else:
      params["bias"] = np.full(8, 0.5, np.float32)
      expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
      expected = expected * scale + 0.5
    np.testing.assert_allclose(layer.apply({"params": params}, x), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["gelu", "gelu_tanh", "relu", "swiglu", "geglu"])
def test_mlp_kinds_match_numpy(kind):
  from scipy.special import erf
  x = np.random.default_rng(6).normal(size=(2, 3, 8))
  cfg = ModelConfig(vocab_size=10, embed_dim=8, mlp_dim=16, mlp=kind, use_bias=False)
  mlp = Mlp(cfg)
  params = nn.unbox(mlp.init(jax.random.PRNGKey(0), x.astype(np.float32)))["params"]
  assert all(set(p) == {"kernel"} for p in params.values())   # use_bias=False: no biases
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  gelu = lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))
  gelu_tanh = lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
  act = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": lambda z: np.maximum(z, 0),
         "swiglu": lambda z: z / (1 + np.exp(-z)), "geglu": gelu_tanh}[kind]
  h = x @ p["wi"]["kernel"]
  h = act(x @ p["wi_gate"]["kernel"]) * h if kind in ("swiglu", "geglu") else act(h)
  expected = h @ p["wo"]["kernel"]
  np.testing.assert_allclose(mlp.apply({"params": params}, x.astype(np.float32)), expected,
                             atol=1e-5, rtol=1e-5)


def test_llama_preset_has_no_biases_and_uses_gqa():
  config = small_config(**presets.LLAMA, num_kv_heads=2)
  params, apply = init_apply(config)
  paths = convert.flatten(params)
  assert not any(p.endswith("/bias") for p in paths), [p for p in paths if p.endswith("bias")]
  assert paths["decoder/layer_0/attention/key/kernel"].shape == (32, 2, 8)
  assert "decoder/layer_0/mlp/wi_gate/kernel" in paths
  assert "decoder/position_embed/embedding" not in paths   # RoPE
  assert np.isfinite(apply(packed_batch([LENGTH]))["lm"]).all()


# --- encoder-decoder: cross-attention and packing on both sides --------------------------------

def encdec_config(**model):
  c = small_config(**{**presets.TRANSFORMER, "dropout_rate": 0.0})
  c.model.update(model)
  return c


def test_encoder_decoder_packing_pairs_source_and_target_segments():
  """Target segment k reads only source segment k: changing source 2 (or target 2) leaves every
  output of target 1 bit-identical, and does change target 2's."""
  _, apply = init_apply(encdec_config(), heads=("lm",))
  source, target = packed_batch([7, 5]), packed_batch([6, 8], seed=1)
  batch = {"inputs": source["inputs"], "segment_ids": source["segment_ids"],
           "positions": source["positions"], "decoder_inputs": target["inputs"],
           "decoder_segment_ids": target["segment_ids"], "decoder_positions": target["positions"]}
  before = apply(batch)["lm"][0]
  t1, t2 = target["segment_ids"][0] == 1, target["segment_ids"][0] == 2
  changed_source = dict(batch, inputs=_changed(source, source["segment_ids"] == 2, 5)["inputs"])
  changed_target = dict(batch, decoder_inputs=_changed(target, target["segment_ids"] == 2,
                                                       6)["inputs"])
  for changed in (changed_source, changed_target):
    after = apply(changed)["lm"][0]
    np.testing.assert_array_equal(after[t1], before[t1])
    assert not np.allclose(after[t2], before[t2])


# --- scanned layers, remat ---------------------------------------------------------------------

FAMILY_CONFIGS = {"decoder": lambda **m: small_config(**m),
                  "llama": lambda **m: small_config(**{**presets.LLAMA, "num_kv_heads": 2, **m}),
                  "encoder": lambda **m: encoder_config(**m),
                  "encoder_decoder": lambda **m: encdec_config(**m)}


def _batch_for(config):
  batch = packed_batch([9, 7])
  if config.model.family == "encoder_decoder":
    batch.update(decoder_inputs=batch["inputs"], decoder_segment_ids=batch["segment_ids"],
                 decoder_positions=batch["positions"])
    batch.pop("token_types")
  return batch


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_scanned_layers_match_unscanned_and_convert_both_ways(family):
  heads = ("mlm", "nsp") if family == "encoder" else ("lm",)
  plain = FAMILY_CONFIGS[family]()
  params, apply_plain = init_apply(plain, heads=heads)
  _, apply_scanned = init_apply(FAMILY_CONFIGS[family](scan_layers=True), heads=heads)
  stacked = convert.to_layout(params, scan=True)
  assert convert.layout_of(stacked) is True and convert.layout_of(params) is False
  kernel = convert.flatten(stacked)[
      ("encoder" if family == "encoder" else "decoder") + "/layers/mlp/wi/kernel"]
  assert kernel.shape == (2, 32, 64)
  batch = _batch_for(plain)
  expected, got = apply_plain(batch), apply_scanned(batch, stacked)
  for name in heads:
    np.testing.assert_allclose(got[name], expected[name], atol=1e-6, rtol=1e-6)
  back = convert.to_layout(stacked, scan=False)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, params)))


@pytest.mark.parametrize("remat", ["full", "dots_saveable"])
@pytest.mark.parametrize("scan", [False, True])
def test_remat_keeps_loss_and_gradients(remat, scan):
  base = small_config(scan_layers=scan)
  params, _ = init_apply(base)
  batch = _batch_for(base)
  def loss(config):
    model = build_model(config)
    def f(p):
      logits = model.apply({"params": p}, batch)["lm"]
      return jnp.mean(jax.nn.log_softmax(logits)[..., 1])
    return jax.jit(jax.value_and_grad(f))(params)
  (l0, g0), (l1, g1) = loss(base), loss(small_config(scan_layers=scan, remat=remat))
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_mlm_at_chosen_positions_equals_scoring_every_position():
  """The MLM head on `mlm_positions` only gives the loss and gradients of full-length logits."""
  from llm.tasks import masked_lm
  config = encoder_config()
  model = build_model(config, ("mlm",))
  rng = np.random.default_rng(0)
  batch = packed_batch([9, 7])
  batch.pop("token_types")
  targets = np.zeros((1, LENGTH), np.int32)
  chosen = np.array([2, 5, 11])
  targets[0, chosen] = rng.integers(5, VOCAB, len(chosen))
  batch["targets"] = targets
  params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), batch))["params"]
  with_positions = dict(batch, mlm_positions=np.array([[2, 5, 11, 0, 0]], np.int32))
  def loss(p, b):
    out = model.apply({"params": p}, b)
    return masked_lm.loss_fn(out, b, masked_lm.normalizers(b))
  grad_fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
  (full, full_sums), full_grads = grad_fn(params, batch)
  (sparse, sums), grads = grad_fn(params, with_positions)
  logits = jax.eval_shape(lambda p: model.apply({"params": p}, with_positions)["mlm"], params)
  assert logits.shape == (1, 5, VOCAB)
  np.testing.assert_allclose(sparse, full, rtol=1e-6)
  assert float(sums["mlm_tokens"]) == float(full_sums["mlm_tokens"]) == 3
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(full_grads)):
    np.testing.assert_allclose(a, b, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("family", ["decoder", "encoder", "encoder_decoder"])
def test_cudnn_is_told_which_self_attention_is_causal(family, monkeypatch):
  """cuDNN gets `is_causal` (so that its kernel skips the masked half) exactly where the mask is
  causal self-attention of the full sequence: decoder layers, not encoders, not cross-attention.
  Traced only (no cuDNN here): the calls into jax.nn.dot_product_attention are recorded."""
  calls, real = [], jax.nn.dot_product_attention
  def record(q, k, v, *args, is_causal=False, implementation=None, **kwargs):
    calls.append((q.shape[1], k.shape[1], is_causal))
    return real(q, k, v, *args, is_causal=is_causal, **kwargs)   # the XLA path, same maths
  monkeypatch.setattr(jax.nn, "dot_product_attention", record)
  preset = {"decoder": {}, "encoder": presets.BERT, "encoder_decoder": presets.T5}[family]
  config = small_config(**{**preset, "dropout_rate": 0.0, "attention_dropout_rate": 0.0,
                           "attention_impl": "cudnn"})
  model = build_model(config)
  batch = {"inputs": np.ones((1, LENGTH), np.int32)}
  if family == "encoder_decoder":
    batch["decoder_inputs"] = batch["inputs"]
  jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch))
  expected = {"decoder": [True] * 2, "encoder": [False] * 2,
              "encoder_decoder": [False] * 2 + [True, False] * 2}[family]
  assert [causal for _, _, causal in calls] == expected
