"""Masked language modelling (BERT/RoBERTa), with next-sentence prediction when the batch has it.

Batch: `inputs` (with [MASK]s), `targets` (original id at chosen positions, 0 elsewhere),
`segment_ids`, `positions`, `token_types`, and `nsp_labels` (1 = B follows A, 0 = random B,
-1 = padding row) when NSP is on. The loss is mean MLM loss + mean NSP loss, as in BERT.
"""
import jax.numpy as jnp

from llm.objectives.losses import cross_entropy_sums

HEADS = ("mlm", "nsp")


def normalizers(batch):
  norms = {"tokens": jnp.maximum(jnp.sum(batch["targets"] > 0), 1).astype(jnp.float32)}
  if "nsp_labels" in batch:
    norms["pairs"] = jnp.maximum(jnp.sum(batch["nsp_labels"] >= 0), 1).astype(jnp.float32)
  return norms


def loss_fn(outputs, batch, norms):
  targets = batch["targets"]
  loss_sum, correct, count = cross_entropy_sums(outputs["mlm"], targets, targets > 0)
  sums = {"mlm_loss": loss_sum, "mlm_correct": correct, "mlm_tokens": count}
  loss = loss_sum / norms["tokens"]
  if "nsp_labels" in batch:
    labels = batch["nsp_labels"]
    sums["nsp_loss"], sums["nsp_correct"], sums["nsp_pairs"] = cross_entropy_sums(
        outputs["nsp"], labels, labels >= 0)
    loss += sums["nsp_loss"] / norms["pairs"]
  return loss, sums


def summarize(sums):
  tokens = max(float(sums["mlm_tokens"]), 1.0)
  mlm_loss = float(sums["mlm_loss"]) / tokens
  out = {"mlm_loss": mlm_loss, "perplexity": float(jnp.exp(mlm_loss)),
         "mlm_accuracy": float(sums["mlm_correct"]) / tokens, "loss": mlm_loss}
  if "nsp_pairs" in sums:
    pairs = max(float(sums["nsp_pairs"]), 1.0)
    out["nsp_loss"] = float(sums["nsp_loss"]) / pairs
    out["nsp_accuracy"] = float(sums["nsp_correct"]) / pairs
    out["loss"] = mlm_loss + out["nsp_loss"]
  return out
