"""Classification objective: loss, accuracy and macro-F1 against direct computations/sklearn."""
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import f1_score

from llm.objectives import classification


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
  assert classification.macro_f1([1, 1, 0], [2, 1, 0], [1, 2, 0]) == pytest.approx(2 / 3)
