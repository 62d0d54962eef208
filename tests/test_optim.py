"""Optimizer: the learning-rate schedule's shape and which parameters get weight decay."""
import jax.numpy as jnp
import numpy as np
import pytest

from llm import optim
from llm.base_config import base_config


def schedule_values(**overrides):
  config = base_config()
  config.total_steps = 100
  config.optimizer.update(learning_rate=1.0, warmup_steps=10, end_lr_ratio=0.1, **overrides)
  _, schedule = optim.make_optimizer(config)
  return np.array([float(schedule(s)) for s in range(101)])


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_then_decay_to_end_ratio(decay):
  lr = schedule_values(decay=decay)
  np.testing.assert_allclose(lr[:11], np.linspace(0, 1, 11), atol=1e-6)   # linear warmup
  assert (np.diff(lr[10:]) <= 1e-7).all()                                   # then never rises
  assert lr[100] == pytest.approx(0.1, abs=1e-6)
  midpoint = {"cosine": 0.1 + 0.9 * 0.5, "linear": 0.55}[decay]             # halfway through decay
  assert lr[55] == pytest.approx(midpoint, abs=1e-6)


def test_constant_and_bad_decay():
  assert (schedule_values(decay="constant")[10:] == 1.0).all()
  with pytest.raises(ValueError, match="optimizer.decay='exp'"):
    schedule_values(decay="exp")


def test_decay_mask_skips_biases_norms_and_embeddings():
  params = {"token_embed": {"embedding": jnp.zeros((4, 2))},
            "layer_0": {"mlp": {"wi": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}},
                        "mlp_norm": {"scale": jnp.zeros(2), "bias": jnp.zeros(2)}},
            "mlm_bias": jnp.zeros(4)}
  mask = optim.decay_mask(params, base_config().optimizer.no_decay)
  assert mask["layer_0"]["mlp"]["wi"] == {"kernel": True, "bias": False}
  assert mask["layer_0"]["mlp_norm"] == {"scale": False, "bias": False}
  assert mask["token_embed"]["embedding"] is False and mask["mlm_bias"] is False


def test_weight_decay_only_shrinks_masked_parameters():
  """With zero gradients, AdamW changes only the decayed parameter: w <- w - lr * wd * w."""
  config = base_config()
  config.total_steps = 10
  config.optimizer.update(learning_rate=0.1, warmup_steps=0, decay="constant", weight_decay=0.5)
  tx, _ = optim.make_optimizer(config)
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  zeros = {"dense": {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}}
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_allclose(updates["dense"]["bias"], 0.0)
