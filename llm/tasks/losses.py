"""The sums every objective is built from: weighted cross-entropy, correct predictions, count."""
import jax.numpy as jnp
import optax


def cross_entropy_sums(logits, labels, weights):
  """(loss sum, correct sum, weight sum) over positions; labels < 0 must carry weight 0."""
  weights = weights.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           jnp.maximum(labels, 0))
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(correct * weights), jnp.sum(weights)
