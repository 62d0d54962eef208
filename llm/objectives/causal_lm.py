"""Causal language modelling (GPT): predict token t+1 from tokens <= t.

Batch: `inputs`, `targets` (the next tokens; 0 = padding, not scored), `segment_ids`, `positions`.
"""
import jax.numpy as jnp
import optax

HEADS = ("lm",)


def token_loss(logits, targets):
  """Summed cross-entropy, correct predictions and count over non-padding targets."""
  weights = (targets > 0).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(correct * weights), jnp.sum(weights)


def normalizers(batch):
  """Loss denominators from the whole batch, so accumulated micro-batches sum to the exact mean."""
  return {"tokens": jnp.maximum(jnp.sum(batch["targets"] > 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  loss_sum, correct, count = token_loss(outputs["lm"], batch["targets"])
  return loss_sum / norms["tokens"], {"lm_loss": loss_sum, "lm_correct": correct, "lm_tokens": count}


def summarize(sums):
  tokens = max(float(sums["lm_tokens"]), 1.0)
  loss = float(sums["lm_loss"]) / tokens
  return {"loss": loss, "perplexity": float(jnp.exp(loss)),
          "accuracy": float(sums["lm_correct"]) / tokens}
