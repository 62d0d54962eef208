"""Classification objective: loss, accuracy and macro-F1 against direct computations/sklearn."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import f1_score

from llm import scores
from llm.tasks import EvalSet, classification, cloze


def run(logits, labels):
  batch = {"labels": jnp.asarray(labels)}
  outputs = {"classify": jnp.asarray(logits, jnp.float32)}
  loss, sums = classification.loss_fn(outputs, batch, classification.normalizers(batch))
  return float(loss), sums


def test_loss_ignores_padding_rows_and_matches_cross_entropy():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
  loss, _ = run(logits, [0, 2, -1])
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert loss == pytest.approx(-(logp[0, 0] + logp[1, 2]) / 2, rel=1e-6)


def test_metrics_summed_over_batches_equal_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 300)
  labels[::7] = 3   # class imbalance
  logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[labels]
  labels_padded = labels.copy()
  labels_padded[-20:] = -1          # padding rows at the end of the last batch
  totals = {}
  for start in range(0, 300, 64):   # like evaluate(): sums over batches, then summarize
    _, sums = run(logits[start:start + 64], labels_padded[start:start + 64])
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
  result = classification.summarize(totals)
  predicted = logits.argmax(-1)
  real = labels_padded >= 0
  assert result["accuracy"] == pytest.approx((predicted == labels)[real].mean())
  assert result["macro_f1"] == pytest.approx(
      f1_score(labels[real], predicted[real], average="macro"), abs=1e-12)


def test_macro_f1_hand_computed():
  # class 0: tp 1, predicted 2, actual 1 -> F1 2/3; class 1: tp 1, pred 1, actual 2 -> 2/3;
  # class 2 never occurs and is never predicted -> left out of the mean.
  assert scores.macro_f1([1, 1, 0], [2, 1, 0], [1, 2, 0]) == pytest.approx(2 / 3)


# --- cloze prompting -----------------------------------------------------------------------------

class _WordTok:
  cls_id, sep_id, mask_id, path = 4, 5, 6, "words"
  words = {"this": 10, "is": 11, "about": 12, ".": 13, "sport": 14, "film": 15, "[MASK]": 6}

  def encode(self, text):
    return [self.words.get(w, 20 + len(w)) for w in text.split()] if text != "two words" else [1, 2]


def test_cloze_rows_keep_the_template_whole():
  tok = _WordTok()
  row = cloze.encode_cloze(tok, " ".join(["word"] * 50), "{text} this is about [MASK] .", 16)
  n = int(row["segment_ids"].sum())
  assert n == 16                                       # the text was cut, not the template
  assert list(row["inputs"][n - 6:n]) == [10, 11, 12, 6, 13, 5]
  assert row["inputs"][row["mask_positions"]] == tok.mask_id and row["mask_positions"] == 13
  # a [MASK] inside the text does not move the label position
  row = cloze.encode_cloze(tok, "[MASK]", "{text} this is about [MASK] .", 16)
  assert row["mask_positions"] == 5 and row["inputs"][1] == tok.mask_id
  with pytest.raises(ValueError, match="leaves no room for the text in seq_len=6"):
    cloze.encode_cloze(tok, "x", "{text} this is about [MASK] .", 6)


def test_verbalizer_needs_one_single_piece_word_per_label():
  import ml_collections
  config = ml_collections.ConfigDict({"corpus": "c", "cloze": {
      "verbalizer": {"sports": "sport", "entertainment": "film"}}})
  tok = _WordTok()
  assert list(cloze.verbalizer_ids(config, tok, ["entertainment", "sports"])) == [15, 14]
  with pytest.raises(ValueError, match=r"has labels \['entertainment', 'sports'\] but corpus"):
    cloze.verbalizer_ids(config, tok, ["sports", "tech"])
  config.cloze.verbalizer.sports = "two words"
  with pytest.raises(ValueError, match="sports='two words' is 2 pieces"):
    cloze.verbalizer_ids(config, tok, ["entertainment", "sports"])


def test_cloze_scores_are_label_word_logits_at_the_mask():
  rng = np.random.default_rng(0)
  mlm = rng.normal(size=(3, 7, 30)).astype(np.float32)
  batch = {"mask_positions": jnp.array([2, 6, 0]), "verbalizer_ids": jnp.array([[5, 9, 1]] * 3),
           "labels": jnp.array([1, 0, -1])}
  got = np.asarray(cloze.class_logits({"mlm": jnp.asarray(mlm)}, batch))
  np.testing.assert_array_equal(got, mlm[[0, 1, 2]][np.arange(3), [2, 6, 0]][:, [5, 9, 1]])
  loss, sums = cloze.loss_fn({"mlm": jnp.asarray(mlm)}, batch, cloze.TASK.normalizers(batch))
  want, _ = run(got, [1, 0, -1])
  assert float(loss) == pytest.approx(want, rel=1e-6) and float(sums["examples"]) == 2


def test_cloze_zero_shot_then_prompt_fine_tuning(cli, tmp_path, trained_bert):
  """llm.evaluate scores the pretrained MLM as is; llm.train then tunes it through the template;
  an init without the needed head cannot be evaluated untrained."""
  from llm.evaluation import evaluate_checkpoint
  from helpers import config_flags, load_config
  args = config_flags({"seq_len": 64, "batch_size": 16, "eval_batches": 2, "total_steps": 2,
                       "log_every": 1})
  config = f"configs/cloze_topic.py:init={trained_bert}"
  proc = cli("evaluate", config, tmp_path / "cloze", *args, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "evaluating init=" in proc.stdout and "newly initialised: nothing" in proc.stdout
  result = json.loads((tmp_path / "cloze" / "evaluate.json").read_text())
  rows = [json.loads(line) for line in (tmp_path / "cloze" / "predictions_validation.jsonl")
          .read_text().splitlines()]
  assert result["step"] == 0 and len(rows) == 32
  assert np.mean([r["label"] == r["prediction"] for r in rows]) == pytest.approx(
      result["accuracy"])
  proc = cli("train", config, tmp_path / "cloze", *args, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "eval/accuracy" in json.loads((tmp_path / "cloze" / "metrics.jsonl").read_text()
                                       .splitlines()[-1])
  with pytest.raises(ValueError, match="init='minilm' has no classify_head.*train first"):
    evaluate_checkpoint(load_config("finetune_topic", seq_len=64, batch_size=16),
                        tmp_path / "untrained", "validation")


def test_predictions_find_their_examples_by_index_not_position():
  source = [{"id": f"doc{i}".encode(), "label": i % 2} for i in range(4)]
  # Rows in another order than the split, with a padding row (-1) among them.
  predictions = {"label": np.asarray([1, 0, 1, 1, 0]),
                 "example_index": np.asarray([3, 2, -1, 1, 0], np.int32)}
  rows = classification.records(predictions, EvalSet(source, ("neg", "pos"), None, None))
  assert [(r["id"], r["label"], r["prediction"]) for r in rows] == [
      ("doc0", "neg", "neg"), ("doc1", "pos", "pos"), ("doc2", "neg", "neg"),
      ("doc3", "pos", "pos")]
