"""Extractive QA rows: [CLS] question [SEP] context window [SEP], one row per window.

A context longer than the row is cut into overlapping windows that start `doc_stride` pieces
apart (BERT's SQuAD recipe), so every answer lies whole inside some window. The context is split
at whitespace into words and each word into pieces; predictions map back through the words, so a
predicted answer is always a run of whole words of the original context text.

Row keys beyond the model inputs:
  start_labels, end_labels  the answer's first/last piece in this window; 0 ([CLS]) when the window
                            holds no whole answer; the first gold answer that fits is used
  word_index                per piece: its context word, -1 for [CLS], question, [SEP], padding
  max_context               per piece: 1 in the one window where it has the most context on both
                            sides; answers may only start there (a word seen in two windows is
                            judged once, where the model saw it best)
  example_index             the example's position in its split (-1 in padding rows)
"""
import re

import numpy as np

from llm.data import tokenizer as tokenizer_lib


def context_words(context):
  """[(start, end)] character spans of the whitespace-separated words of a context."""
  return [(m.start(), m.end()) for m in re.finditer(r"\S+", context)]


def answer_word_span(words, start, text):
  """(first, last) index of the words overlapping characters [start, start + len(text)), or None."""
  end = start + len(text)
  inside = [i for i, (s, e) in enumerate(words) if s < end and e > start]
  return (inside[0], inside[-1]) if inside else None


def window_starts(num_pieces, budget, doc_stride):
  """Start offsets of the windows of `budget` pieces that cover `num_pieces`."""
  starts = [0]
  while starts[-1] + budget < num_pieces:
    starts.append(starts[-1] + doc_stride)
  return starts


def max_context_mask(start, length, all_starts, budget, num_pieces):
  """1 for the pieces of window [start, start+length) that have their most context here."""
  def score(s, g):   # context on the poorer side, ties broken towards longer windows
    n = min(budget, num_pieces - s)
    return min(g - s, s + n - 1 - g) + 0.01 * n
  out = np.zeros(length, np.int32)
  for j in range(length):
    g = start + j
    best = max((s for s in all_starts if s <= g < s + budget), key=lambda s: score(s, g))
    out[j] = best == start
  return out


def encode_qa(tok, example, index, seq_len, max_query_len, doc_stride):
  """The rows (one per window) of one SQuAD example dict with str fields."""
  question = tok.encode(example["question"])[:max_query_len]
  context = example["context"]
  words = context_words(context)
  pieces, piece_word = [], []
  for w, ids in enumerate(tok.encode_batch(context[s:e] for s, e in words)):
    ids = ids or [tokenizer_lib.UNK]
    pieces += ids
    piece_word += [w] * len(ids)
  # Answers as piece ranges [first piece of first word, last piece of last word].
  first_piece = {}
  for p, w in enumerate(piece_word):
    first_piece.setdefault(w, p)
  last_piece = {w: p for p, w in enumerate(piece_word)}
  answers = []
  for text, start in zip(example["answers"]["text"], example["answers"]["answer_start"]):
    span = answer_word_span(words, int(start), text)
    if span:
      answers.append((first_piece[span[0]], last_piece[span[1]]))

  offset = len(question) + 2                  # [CLS] question [SEP]
  budget = seq_len - offset - 1               # room for the window and the final [SEP]
  if budget < 1 or doc_stride > budget:
    raise ValueError(f"qa: seq_len={seq_len} leaves {budget} pieces per window after a "
                     f"{len(question)}-piece question; need doc_stride={doc_stride} <= that "
                     f"(raise seq_len or lower qa.max_query_len / qa.doc_stride)")
  starts = window_starts(len(pieces), budget, doc_stride)
  rows = []
  for start in starts:
    window = pieces[start:start + budget]
    n = offset + len(window) + 1
    row = {k: np.zeros(seq_len, np.int32) for k in ("inputs", "segment_ids", "positions",
                                                    "token_types", "max_context")}
    row["inputs"][:n] = [tok.cls_id] + question + [tok.sep_id] + window + [tok.sep_id]
    row["segment_ids"][:n] = 1
    row["positions"][:n] = np.arange(n)
    row["token_types"][offset:n] = 1          # BERT: segment B = the context
    row["word_index"] = np.full(seq_len, -1, np.int32)
    row["word_index"][offset:offset + len(window)] = piece_word[start:start + budget]
    row["max_context"][offset:offset + len(window)] = max_context_mask(
        start, len(window), starts, budget, len(pieces))
    fits = [(a, b) for a, b in answers if start <= a and b < start + len(window)]
    a, b = (fits[0][0] - start + offset, fits[0][1] - start + offset) if fits else (0, 0)
    row["start_labels"], row["end_labels"] = np.int32(a), np.int32(b)
    row["example_index"] = np.int32(index)
    rows.append(row)
  return rows
