"""Sampling: the fixed-size decode buffer gives what re-running on the bare prefix gives."""
import jax
import jax.numpy as jnp
import numpy as np

from llm.base_config import base_config
from llm.generate import generate, sample_next
from llm.models import build_model
from llm.state import dummy_batch


def small_model():
  config = base_config()
  config.vocab_size = 50
  config.seq_len = 16
  config.model.update(num_layers=2, embed_dim=32, num_heads=4, mlp_dim=64, max_len=32)
  model = build_model(config)
  params = model.init(jax.random.PRNGKey(0), dummy_batch(config))["params"]
  return model, jax.tree.map(lambda p: p.unbox() if hasattr(p, "unbox") else p, params,
                             is_leaf=lambda p: hasattr(p, "unbox"))


def test_greedy_matches_argmax_over_growing_prefixes():
  model, params = small_model()
  prompt = [2, 7, 11, 5]
  (got,) = generate(model, params, prompt, 10, temperature=0.0, top_k=0, num_samples=1, seed=0)
  expected = list(prompt)
  for _ in range(10):
    logits = model.apply({"params": params}, {"inputs": jnp.asarray([expected])})["lm"]
    nxt = int(jnp.argmax(logits[0, -1]))
    if nxt == 3:   # </s> ends the sample
      break
    expected.append(nxt)
  assert got == expected


def test_top_k_only_samples_the_k_best():
  logits = jnp.asarray([[0.0, 5.0, 1.0, 4.0, -2.0]] * 2000)
  draws = np.asarray(sample_next(logits, jax.random.PRNGKey(1), 1.0, 2))
  assert set(np.unique(draws)) == {1, 3}
  assert 0.6 < (draws == 1).mean() < 0.85     # softmax(5, 4) gives token 1 73%
  assert (np.asarray(sample_next(logits, jax.random.PRNGKey(1), 0.0, 0)) == 1).all()
