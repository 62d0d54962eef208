"""Causal language modelling (GPT, Llama): predict token t+1 from tokens <= t.

Rows: `<s> text </s>` per document (the tokenizer's own ids; no <s> where it adds none, as
SmolLM2's), shifted by one into `inputs`/`targets` (0 = padding, not scored), packed into full
rows with `segment_ids` and `positions` restarting per document.
"""
import jax.numpy as jnp
import numpy as np

from llm.data import batching, packing
from llm.tasks import Task
from llm.tasks.losses import cross_entropy_sums


def rows(docs, config, tok):
  def example(item):
    ids = [tok.bos_id] * tok.add_bos + tok.encode(item[1]["text"]) + [tok.eos_id]
    ids = np.asarray(ids, np.int32)
    return {"inputs": ids[:-1], "targets": ids[1:]}
  return packing.pack(docs.map(example).to_iter_dataset(batching.READ_OPTIONS), config.seq_len)


def normalizers(batch):
  """Loss denominators from the whole batch, so accumulated micro-batches sum to the exact mean."""
  return {"tokens": jnp.maximum(jnp.sum(batch["targets"] > 0), 1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  targets = batch["targets"]
  loss_sum, correct, count = cross_entropy_sums(outputs["lm"], targets, targets > 0)
  return loss_sum / norms["tokens"], {"lm_loss": loss_sum, "lm_correct": correct,
                                      "lm_tokens": count}


def summarize(sums):
  tokens = max(float(sums["lm_tokens"]), 1.0)
  loss = float(sums["lm_loss"]) / tokens
  return {"loss": loss, "perplexity": float(np.exp(loss)),
          "accuracy": float(sums["lm_correct"]) / tokens}


TASK = Task(name="causal_lm", families=("decoder",), heads=lambda config: ("lm",), rows=rows,
            normalizers=normalizers, loss_fn=loss_fn, summarize=summarize)
