"""NER: word-piece alignment, and entity-level scores against hand-computed values."""
import numpy as np
import pytest

from llm.convert import hf_bert
from llm.data.wordpiece import WordPieceTokenizer
from llm.tasks import EvalSet, tagging

NAMES = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
TAG = {name: i for i, name in enumerate(NAMES)}


@pytest.fixture(scope="module")
def tok():
  return WordPieceTokenizer(hf_bert.resolve_model_dir("minilm"))


def test_first_piece_carries_the_tag(tok):
  words = ["Angela", "Merkel", "visited", "Ouagadougou", "\u200b"]
  tags = [TAG["B-PER"], TAG["I-PER"], TAG["O"], TAG["B-LOC"], TAG["O"]]
  row = tagging.encode_words(tok, words, tags, seq_len=32)
  pieces = [tok.encode(w) or [1] for w in words]
  assert len(pieces[3]) > 1 and tok.encode("\u200b") == []   # a split word and an empty one
  expected_inputs = [tok.cls_id] + [i for p in pieces for i in p] + [tok.sep_id]
  n = len(expected_inputs)
  expected_labels = [-1] + [t for p, t in zip(pieces, tags) for t in [t] + [-1] * (len(p) - 1)]
  np.testing.assert_array_equal(row["inputs"][:n], expected_inputs)
  np.testing.assert_array_equal(row["labels"][:n], expected_labels + [-1])
  assert (row["labels"][n:] == -1).all() and (row["inputs"][n:] == 0).all()
  assert (row["segment_ids"][:n] == 1).all() and (row["segment_ids"][n:] == 0).all()


def test_truncation_keeps_whole_words_and_predicts_o_for_the_rest(tok):
  words = ["word"] * 20
  row = tagging.encode_words(tok, words, [TAG["O"]] * 20, seq_len=8)
  assert (row["labels"] >= 0).sum() == 6            # [CLS] + 6 words + [SEP]
  assert tagging.word_tags(np.where(row["labels"] >= 0, TAG["B-LOC"], -1), 20, NAMES) == \
      ["B-LOC"] * 6 + ["O"] * 14


class Split:
  """A stand-in for a TFDS data source: indexable examples with bytes fields."""

  def __init__(self, sentences):
    self.rows = [{"id": f"s{i}".encode(), "tokens": [w.encode() for w in words],
                  "tags": [TAG[t] for t in tags]} for i, (words, tags) in enumerate(sentences)]

  def __len__(self):
    return len(self.rows)

  def __getitem__(self, i):
    return self.rows[i]


def predictions_for(predicted_sentences, length=12):
  out = np.full((len(predicted_sentences), length), -1)
  for i, tags in enumerate(predicted_sentences):
    out[i, 1:1 + len(tags)] = [TAG[t] for t in tags]   # first pieces after [CLS]
  return {"tags": out, "example_index": np.arange(len(predicted_sentences))}


def test_entity_scores_hand_computed():
  gold = [(["Angela", "Merkel", "in", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
          (["New", "York", "and", "Bob"], ["B-LOC", "I-LOC", "O", "B-PER"])]
  predicted = [["B-PER", "I-PER", "O", "O"],          # PER right, LOC missed
               ["B-LOC", "O", "O", "B-PER"]]          # LOC boundary wrong, PER right
  result = tagging.score(predictions_for(predicted), EvalSet(Split(gold), NAMES, None, None))
  # gold entities 4, predicted 3 (PER, LOC 'New', PER), correct 2.
  assert result["span_precision"] == pytest.approx(2 / 3)
  assert result["span_recall"] == pytest.approx(2 / 4)
  assert result["span_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
  assert result["span_f1/PER"] == pytest.approx(1.0)
  assert result["span_f1/LOC"] == pytest.approx(0.0)
  rows = tagging.records(predictions_for(predicted), EvalSet(Split(gold), NAMES, None, None))
  assert rows[1] == {"id": "s1", "tokens": gold[1][0], "tags": gold[1][1],
                     "predicted": predicted[1]}
