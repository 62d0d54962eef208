"""Cloze-style classification with a masked LM (PET, Schick & Schuetze, 2021).

The text is wrapped in a template with one [MASK] (config.cloze.template, e.g. "{text} This
article is about [MASK] ."), and each label is a word (config.cloze.verbalizer). The class
scores are the MLM logits of the label words at the [MASK]: with no training that is zero-shot
classification by the pretrained LM; training them with cross-entropy is prompt-based
fine-tuning, which needs no new parameters at all.

Batch: classification's (`inputs`, ..., `labels`) plus `mask_positions` (batch,) and
`verbalizer_ids` (batch, num_classes): the label words' token ids, the same in every row.
Metrics, predictions and records are classification's (accuracy, macro-F1).
"""
import jax.numpy as jnp

from llm.objectives import classification
from llm.objectives.classification import normalizers, records, summarize  # noqa: F401

HEADS = ("mlm",)


def class_logits(outputs, batch):
  """(batch, num_classes): the MLM logits of each label word at the row's [MASK]."""
  logits = outputs["mlm"]
  rows = jnp.arange(logits.shape[0])
  at_mask = logits[rows, batch["mask_positions"]]                     # (batch, vocab)
  return jnp.take_along_axis(at_mask, batch["verbalizer_ids"], axis=-1)


def loss_fn(outputs, batch, norms):
  return classification.loss_fn({"classify": class_logits(outputs, batch)}, batch, norms)


def predict(outputs, batch):
  return jnp.argmax(class_logits(outputs, batch), -1)
