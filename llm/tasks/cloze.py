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
import numpy as np

from llm.data import batching, packing
from llm.tasks import Task, classification


def _template_ids(tok, part):
  """Token ids of a piece of template text, with [MASK] as the mask token."""
  ids = []
  for i, chunk in enumerate(part.split("[MASK]")):
    if i:
      ids.append(tok.mask_id)
    if chunk.strip():
      ids += tok.encode(chunk.strip())
  return ids


def encode_cloze(tok, text, template, seq_len):
  """[CLS] template-with-text [SEP]: the text is cut so the template always fits whole.
  Returns the row plus `mask_positions`, the index of the template's [MASK]."""
  prefix, suffix = template.split("{text}")
  before, after = _template_ids(tok, prefix), _template_ids(tok, suffix)
  room = seq_len - 2 - len(before) - len(after)
  if room < 1:
    raise ValueError(f"cloze.template={template!r} leaves no room for the text in seq_len="
                     f"{seq_len}; shorten the template or raise seq_len")
  text_ids = tok.encode(text)[:room]
  row = packing.padded_row([tok.cls_id] + before + text_ids + after + [tok.sep_id], seq_len)
  # Located in the template, not searched for: the text itself may contain the mask token.
  mask = (1 + before.index(tok.mask_id) if tok.mask_id in before
          else 1 + len(before) + len(text_ids) + after.index(tok.mask_id))
  row["mask_positions"] = np.int32(mask)
  return row


def verbalizer_ids(config, tok, names):
  """The token id of each class's label word (config.cloze.verbalizer), in class order."""
  verbalizer = dict(config.cloze.verbalizer)
  if set(verbalizer) != set(names):
    raise ValueError(f"cloze.verbalizer has labels {sorted(verbalizer)} but corpus "
                     f"{config.corpus!r} has {sorted(names)}; give one word per label")
  ids = []
  for name in names:
    pieces = tok.encode(verbalizer[name])
    if len(pieces) != 1:
      raise ValueError(f"cloze.verbalizer: {name}={verbalizer[name]!r} is {len(pieces)} pieces "
                       f"in this vocabulary ({tok.path}); choose a word that is one piece")
    ids.append(pieces[0])
  return np.asarray(ids, np.int32)


def rows(docs, config, tok):
  """One padded template row per example, with its [MASK] position, label and label words."""
  template = config.cloze.template
  words = verbalizer_ids(config, tok, config.label_names)
  def example(item):
    row = encode_cloze(tok, item[1]["text"], template, config.seq_len)
    row["labels"] = np.int32(item[1]["label"])
    row["verbalizer_ids"] = words
    row["example_index"] = np.int32(item[0])
    return row
  return docs.map(example).to_iter_dataset(batching.READ_OPTIONS)


def class_logits(outputs, batch):
  """(batch, num_classes): the MLM logits of each label word at the row's [MASK]."""
  logits = outputs["mlm"]
  rows = jnp.arange(logits.shape[0])
  at_mask = logits[rows, batch["mask_positions"]]                     # (batch, vocab)
  return jnp.take_along_axis(at_mask, batch["verbalizer_ids"], axis=-1)


def loss_fn(outputs, batch, norms):
  return classification.loss_fn({"classify": class_logits(outputs, batch)}, batch, norms)


def predict(outputs, batch):
  return {"label": jnp.argmax(class_logits(outputs, batch), -1),
          "example_index": batch["example_index"]}


def check(config):
  template = config.cloze.template
  if template.count("{text}") != 1 or template.count("[MASK]") != 1:
    raise ValueError(f"cloze.template={template!r}: expected one '{{text}}' and one '[MASK]'")


TASK = Task(name="cloze", families=("encoder",), heads=lambda config: ("mlm",), rows=rows,
            normalizers=classification.normalizers, loss_fn=loss_fn,
            summarize=classification.summarize, predict=predict,
            records=classification.records, check=check,
            export_class=lambda config: "BertForMaskedLM",
            pad_with_minus_one=("labels", "example_index"),
            # The text in a template with one [MASK]; one single-piece word per label name.
            config={"cloze": dict(template="{text} [MASK] .", verbalizer={})},
            stream_keys=("cloze",), labels=True)
