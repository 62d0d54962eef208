"""In-context classification: label scores equal a plain forward pass's log-probabilities,
calibration and the metrics equal scikit-learn's on the same decisions, demonstrations are drawn
by the seed, and prompts that cannot work are refused."""
import numpy as np
import pytest

from llm.base_config import base_config
from llm.tasks import EvalSet, in_context

from helpers import model_and_params

NAMES = ("business", "sports", "tech")


class CharTokenizer:
  """Ids 3.. for characters: enough to build and score rows without a vocabulary file."""
  bos_id, eos_id, add_bos = 1, 2, True

  def encode(self, text):
    return [3 + ord(c) % 37 for c in text]


def icl_config(**icl):
  c = base_config()
  c.objective = "in_context"
  c.corpus = "bbc_news"
  c.seq_len = 96
  c.icl.update({"template": "T: {text}\nL: {label}\n\n", "max_words": 3, **icl})
  return c


class Builder:
  """A corpus builder stand-in: its train split is TRAIN."""
  def as_data_source(self, split):
    assert split == "train"
    return [{"text": f"train text number {i} with more words", "label": i % 3} for i in range(9)]


def test_label_scores_are_the_models_log_probabilities():
  config = icl_config(shots=2)
  tok = CharTokenizer()
  demos = in_context.demonstrations(config, Builder(), NAMES)
  rows = in_context.example_rows(config, tok, demos, list(NAMES), 7,
                                 {"text": "Shares rose on Monday morning", "label": 2})
  assert len(rows) == 6 and [r["choice"] for r in rows] == [0, 1, 2] * 2
  assert [r["content_free"] for r in rows] == [0] * 3 + [1] * 3
  model, params = model_and_params("llama", vocab=40)   # RoPE: rows longer than its table
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  outputs = model.apply({"params": params}, {k: batch[k] for k in ("inputs", "segment_ids",
                                                                     "positions")})
  got = np.asarray(in_context._label_logprob(outputs, batch))
  prompt, space = in_context.prompt_parts(config, demos, "Shares rose on")
  assert prompt.endswith("T: Shares rose on\nL:") and space == " "
  for row, value in zip(rows[:3], got[:3]):   # one full forward pass per text, then the sum
    ids = [tok.bos_id] + tok.encode(prompt) + tok.encode(" " + NAMES[row["choice"]])
    logits = np.asarray(model.apply({"params": params}, {"inputs": np.asarray([ids[:-1]])})["lm"],
                        np.float64)[0]
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    start = 1 + len(tok.encode(prompt))
    expected = sum(logp[t - 1, ids[t]] for t in range(start, len(ids)))
    assert value == pytest.approx(expected, abs=1e-4)


def test_calibration_and_metrics_match_scikit_learn():
  metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(0)
  examples = [{"id": f"e{i}".encode(), "label": int(rng.integers(3))} for i in range(40)]
  plain, free = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
  rows = [(i, k, cf, (free if cf else plain)[i, k]) for i in range(40) for cf in (0, 1)
          for k in range(3)]
  rows.append((-1, 0, 0, 5.0))   # a padding row
  predictions = {key: np.asarray([r[j] for r in rows])
                 for j, key in enumerate(("example_index", "choice", "content_free", "logprob"))}
  split = EvalSet(examples, NAMES, None, None)
  result = in_context.score(predictions, split)
  gold = [e["label"] for e in examples]
  for prefix, decisions in (("", plain.argmax(1)), ("calibrated_", (plain - free).argmax(1))):
    assert result[f"{prefix}accuracy"] == pytest.approx(metrics.accuracy_score(gold, decisions))
    assert result[f"{prefix}macro_f1"] == pytest.approx(
        metrics.f1_score(gold, decisions, average="macro"))
  records = in_context.records(predictions, split)
  assert len(records) == 40 and records[0]["prediction"] == NAMES[plain[0].argmax()]
  # An example with a class row missing (eval_batches cut the split) is left out.
  cut = {k: v[:-3] for k, v in predictions.items()}
  assert len(in_context.class_scores(cut, 3)) == 39


def test_demonstrations_are_drawn_by_the_seed_and_prompts_that_cannot_work_are_refused():
  config = icl_config(shots=3)
  first = in_context.demonstrations(config, Builder(), NAMES)
  assert first == in_context.demonstrations(config, Builder(), NAMES)
  assert all(len(text.split()) == 3 for text, _ in first)   # cut to max_words
  config.seed = 1
  assert in_context.demonstrations(config, Builder(), NAMES) != first
  with pytest.raises(ValueError, match="icl.shots=10 but the train split of 'bbc_news' has "
                                       "only 9 examples"):
    in_context.demonstrations(icl_config(shots=10), Builder(), NAMES)
  long = icl_config(shots=8)
  demos = in_context.demonstrations(long, Builder(), NAMES)
  with pytest.raises(ValueError, match=r"pieces \(8 shots\) does not fit seq_len=96; lower "
                                       "icl.shots or icl.max_words, or raise seq_len"):
    in_context.example_rows(long, CharTokenizer(), demos, list(NAMES), 0,
                            {"text": "x", "label": 0})
  with pytest.raises(ValueError, match="needs {text} and then {label}"):
    in_context.check(icl_config(template="{label}: {text}"))
  with pytest.raises(ValueError, match="is evaluated, not trained: run llm.evaluate"):
    in_context.rows(None, icl_config(), CharTokenizer(), train=True)
