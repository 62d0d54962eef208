"""Task metrics computed on the host over a whole split, each as its reference defines it:
macro-F1, SQuAD v1.1's exact match and F1, seqeval's entity scores, ROUGE and BLEU."""
import collections
import re
import string

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def macro_f1(true_positives, predicted, actual):
  """Unweighted mean F1 over the classes that occur in the labels or the predictions."""
  tp, predicted, actual = (np.asarray(x, np.float64) for x in (true_positives, predicted, actual))
  present = (predicted + actual) > 0
  f1 = 2 * tp[present] / (predicted[present] + actual[present])
  return float(f1.mean()) if present.any() else 0.0


def normalize_answer(text):
  """SQuAD v1.1's official answer normalisation."""
  text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def exact_match(prediction, gold):
  """SQuAD v1.1's exact match of one prediction against one gold answer."""
  return float(normalize_answer(prediction) == normalize_answer(gold))


def answer_f1(prediction, gold):
  """SQuAD v1.1's bag-of-words F1 between the normalised prediction and gold answer."""
  predicted, actual = normalize_answer(prediction).split(), normalize_answer(gold).split()
  same = sum((collections.Counter(predicted) & collections.Counter(actual)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(predicted), same / len(actual)
  return 2 * precision * recall / (precision + recall)


def entity_scores(gold_tags, predicted_tags):
  """Entity-level precision/recall/F1 (seqeval, CoNLL rules) over lists of tag sequences, and
  F1 per entity type as span_f1/<type>."""
  from seqeval.metrics import classification_report
  report = classification_report(gold_tags, predicted_tags, output_dict=True, zero_division=0)
  out = {f"span_{k.replace('-score', '')}": report["micro avg"][k]
         for k in ("precision", "recall", "f1-score")}
  for entity, values in report.items():
    if entity not in ("micro avg", "macro avg", "weighted avg"):
      out[f"span_f1/{entity}"] = values["f1-score"]
  return out


def rouge_scorer():
  """Google's `rouge-score` scorer of ROUGE_TYPES, with stemming (rougeLsum is LCS over sentences
  split at newlines: for one-line texts the same as rougeL)."""
  from rouge_score import rouge_scorer as scorer
  return scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def corpus_bleu(predictions, references):
  """sacrebleu's corpus BLEU over texts, as a fraction."""
  import sacrebleu
  return sacrebleu.corpus_bleu(predictions, [references]).score / 100


def corpus_chrf(predictions, references):
  """sacrebleu's corpus chrF (character 6-grams, beta 2) over texts, as a fraction."""
  import sacrebleu
  return sacrebleu.corpus_chrf(predictions, [references]).score / 100
