"""Causal language modelling (GPT): predict token t+1 from tokens <= t.

Batch: `inputs`, `targets` (the next tokens; 0 = padding, not scored), `segment_ids`, `positions`.
"""
import jax.numpy as jnp

from llm.objectives.losses import cross_entropy_sums

HEADS = ("lm",)


def normalizers(batch):
  """Loss denominators from the whole batch, so accumulated micro-batches sum to the exact mean."""
  return {"tokens": jnp.maximum(jnp.sum(batch["targets"] > 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  targets = batch["targets"]
  loss_sum, correct, count = cross_entropy_sums(outputs["lm"], targets, targets > 0)
  return loss_sum / norms["tokens"], {"lm_loss": loss_sum, "lm_correct": correct, "lm_tokens": count}


def summarize(sums):
  tokens = max(float(sums["lm_tokens"]), 1.0)
  loss = float(sums["lm_loss"]) / tokens
  return {"loss": loss, "perplexity": float(jnp.exp(loss)),
          "accuracy": float(sums["lm_correct"]) / tokens}
