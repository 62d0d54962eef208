"""In-context classification with a decoder (Brown et al., 2020): no training; each class is
scored by the log-probability the model gives its label word after a prompt of demonstrations,
with or without contextual calibration (Zhao et al., 2021).

Prompt: `icl.shots` demonstrations drawn from the train split with config.seed (the same ones,
in the same order, for every example evaluated), each `icl.template` over its text (cut to
`icl.max_words` words) and its label word (`icl.verbalizer`, else the corpus' label name), then
the example's own text with the template cut before its label. Every class is one row: prompt +
label word, scored on the label's tokens only (their summed log-probability). Calibration: every
class also gets the same row with `icl.content_free` ("N/A") as the text; a class's calibrated
score is its log-probability less the one it gets after the content-free text (dividing by
p_cf, Zhao et al.'s diagonal W), which leaves the argmax of the label-normalised probabilities.

Metrics: accuracy and macro-F1, uncalibrated and calibrated (`calibrated_*`), and the mean log-
probability of the gold label's tokens (`loss`, `perplexity`). Evaluation only: llm.evaluate.
"""
import grain
import jax
import jax.numpy as jnp
import numpy as np

from llm import scores
from llm.data import batching, corpora
from llm.tasks import Task


def demonstrations(config, builder, names):
  """[(text, label word)] of icl.shots train examples drawn with config.seed."""
  source = builder.as_data_source("train")
  shots = config.icl.shots
  if shots > len(source):
    raise ValueError(f"icl.shots={shots} but the train split of {config.corpus!r} has only "
                     f"{len(source)} examples")
  picked = np.random.default_rng(config.seed).choice(len(source), shots, replace=False)
  out = []
  for i in picked:
    example = corpora.decode_example(source[int(i)])
    out.append((cut(example["text"], config), word(config, names, int(example["label"]))))
  return out


def cut(text, config):
  return " ".join(text.split()[:config.icl.max_words])


def word(config, names, label):
  verbalizer = dict(config.icl.verbalizer)
  return verbalizer.get(names[label], names[label])


def prompt_parts(config, demos, text):
  """(prompt text, separator before the label word): the demonstrations, then `text` in the
  template up to its label."""
  before = config.icl.template.split("{label}")[0]
  query = before.format(text=text)
  space = " " if query.endswith(" ") else ""
  shown = "".join(config.icl.template.format(text=t, label=w) for t, w in demos)
  return shown + query.removesuffix(space), space


def example_rows(config, tok, demos, words, index, example):
  """The rows of one example: one per class, and with calibration one more per class."""
  texts = [(cut(example["text"], config), 0)]
  if config.icl.calibrate:
    texts.append((config.icl.content_free, 1))
  out = []
  for text, content_free in texts:
    prompt, space = prompt_parts(config, demos, text)
    prompt_ids = [tok.bos_id] * tok.add_bos + tok.encode(prompt)
    for choice, label_word in enumerate(words):
      ids = prompt_ids + tok.encode(space + label_word)
      if len(ids) - 1 > config.seq_len:
        raise ValueError(f"icl: a prompt of {len(ids) - 1} pieces ({config.icl.shots} shots) "
                         f"does not fit seq_len={config.seq_len}; lower icl.shots or "
                         f"icl.max_words, or raise seq_len")
      row = {k: np.zeros(config.seq_len, np.int32) for k in ("inputs", "targets", "segment_ids")}
      n = len(ids) - 1
      row["inputs"][:n], row["targets"][:n], row["segment_ids"][:n] = ids[:-1], ids[1:], 1
      row["targets"][:len(prompt_ids) - 1] = 0   # only the label word is scored
      row["positions"] = np.arange(config.seq_len, dtype=np.int32)
      row.update(example_index=np.int32(index), choice=np.int32(choice),
                 content_free=np.int32(content_free),
                 labels=np.int32(int(example["label"]) if not content_free else -1))
      out.append(row)
  return out


class _Rows(grain.experimental.FlatMapTransform):
  def __init__(self, make, fan_out):
    self.make, self.max_fan_out = make, fan_out

  def flat_map(self, element):
    return self.make(*element)


def rows(docs, config, tok, train):
  if train:
    raise ValueError("objective='in_context' is evaluated, not trained: run llm.evaluate")
  builder = corpora.corpus_builder(config)
  names = list(config.label_names)
  demos = demonstrations(config, builder, names)
  words = [word(config, names, k) for k in range(len(names))]
  make = lambda index, example: example_rows(config, tok, demos, words, index,
                                             corpora.decode_example(example))
  fan_out = len(words) * (2 if config.icl.calibrate else 1)
  return grain.experimental.FlatMapIterDataset(
      docs.to_iter_dataset(batching.READ_OPTIONS), _Rows(make, fan_out))


def _label_logprob(outputs, batch):
  """Per row: the summed log-probability of its scored tokens (the label word)."""
  logp = jax.nn.log_softmax(outputs["lm"].astype(jnp.float32), axis=-1)
  targets = batch["targets"]
  picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(targets > 0, picked, 0.0), axis=-1)


def normalizers(batch):
  gold = (batch["choice"] == batch["labels"]) & (batch["content_free"] == 0)
  return {"tokens": jnp.maximum(jnp.sum(jnp.where(gold[:, None], batch["targets"] > 0, False)),
                                1).astype(jnp.float32)}


def loss_fn(outputs, batch, norms):
  """The gold label's negative log-probability per token (rows of other classes not counted)."""
  gold = (batch["choice"] == batch["labels"]) & (batch["content_free"] == 0)
  tokens = jnp.sum(jnp.where(gold[:, None], batch["targets"] > 0, False))
  loss = -jnp.sum(jnp.where(gold, _label_logprob(outputs, batch), 0.0))
  return loss / norms["tokens"], {"label_loss": loss, "label_tokens": tokens}


def summarize(sums):
  tokens = max(float(sums["label_tokens"]), 1.0)
  loss = float(sums["label_loss"]) / tokens
  return {"loss": loss, "perplexity": float(np.exp(loss))}


def predict(outputs, batch):
  return {"logprob": _label_logprob(outputs, batch), "example_index": batch["example_index"],
          "choice": batch["choice"], "content_free": batch["content_free"]}


def class_scores(predictions, num_classes):
  """{example index: (log-probabilities (num_classes,), content-free ones or None)}."""
  out = {}
  for i, k, cf, logprob in zip(predictions["example_index"], predictions["choice"],
                               predictions["content_free"], predictions["logprob"]):
    if i < 0:   # a padding row
      continue
    plain, free = out.setdefault(int(i), (np.full(num_classes, np.nan),
                                          np.full(num_classes, np.nan)))
    (free if cf else plain)[int(k)] = float(logprob)
  # An example whose rows were not all evaluated (eval_batches cut the split) is left out.
  return {i: (p, None if np.isnan(f).all() else f) for i, (p, f) in sorted(out.items())
          if not np.isnan(p).any() and (np.isnan(f).all() or not np.isnan(f).any())}


def records(predictions, split):
  names = split.label_names
  out = []
  for i, (plain, free) in class_scores(predictions, len(names)).items():
    example = split.examples[i]
    row = {"id": example["id"].decode(), "label": names[example["label"]],
           "prediction": names[int(np.argmax(plain))],
           "logprobs": {n: round(float(v), 4) for n, v in zip(names, plain)}}
    if free is not None:
      row["calibrated_prediction"] = names[int(np.argmax(plain - free))]
    out.append(row)
  return out


def _accuracy_f1(gold, predicted, num_classes):
  gold, predicted = np.asarray(gold), np.asarray(predicted)
  counts = [np.bincount(a, minlength=num_classes) for a in (predicted, gold)]
  true_positives = np.bincount(gold[gold == predicted], minlength=num_classes)
  return float(np.mean(gold == predicted)), scores.macro_f1(true_positives, *counts)


def score(predictions, split):
  num_classes = len(split.label_names)
  by_example = class_scores(predictions, num_classes)
  gold = [int(split.examples[i]["label"]) for i in by_example]
  plain = [int(np.argmax(p)) for p, _ in by_example.values()]
  result = dict(zip(("accuracy", "macro_f1"), _accuracy_f1(gold, plain, num_classes)))
  if by_example and next(iter(by_example.values()))[1] is not None:
    calibrated = [int(np.argmax(p - f)) for p, f in by_example.values()]
    result.update(zip(("calibrated_accuracy", "calibrated_macro_f1"),
                      _accuracy_f1(gold, calibrated, num_classes)))
  return result


def check(config):
  template = config.icl.template
  if "{text}" not in template or "{label}" not in template or (
      template.index("{text}") > template.index("{label}")):
    raise ValueError(f"icl.template={template!r} needs {{text}} and then {{label}}, e.g. "
                     f"'Text: {{text}}\\nLabel: {{label}}\\n\\n'")


TASK = Task(name="in_context", families=("decoder",), heads=lambda config: ("lm",), rows=rows,
            normalizers=normalizers, loss_fn=loss_fn, summarize=summarize, predict=predict,
            records=records, score=score, check=check, labels=True,
            pad_with_minus_one=("labels", "example_index"),
            # icl: demonstrations drawn from train with config.seed; texts cut to max_words
            # words; verbalizer {label name: word} (default: the names); calibrate adds the
            # content-free rows.
            config={"icl": dict(shots=0, template="Text: {text}\nLabel: {label}\n\n",
                                max_words=60, verbalizer={}, calibrate=True,
                                content_free="N/A")},
            ranges={"icl.shots": "[0, inf)", "icl.max_words": "[1, inf)"})
