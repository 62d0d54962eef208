"""BERT pretraining examples: sentence pairs for next-sentence prediction and 80/10/10 masking.

Pure numpy; every random choice comes from an explicit `numpy.random.Generator`.
"""
import re

import numpy as np

# End of sentence: . ! ? plus any closing quotes/brackets, then whitespace before something that
# starts a sentence. Requiring the capital keeps "e.g. this" and "3.5" in one piece.
_SENTENCE_END = re.compile(r"""([.!?]["'”’)\]]*)\s+(?=[A-Z0-9"'“‘])""")


def split_sentences(text):
  """Splits a document into non-empty sentences: at newlines, then at sentence-final punctuation."""
  text = _SENTENCE_END.sub("\\1\n", text)
  return [s.strip() for s in text.split("\n") if s.strip()]


def _truncate_pair(a, b, max_tokens, rng):
  """Trims the longer of a/b one token at a time, at a random end, until both fit (in place)."""
  while len(a) + len(b) > max_tokens:
    longer = a if len(a) > len(b) else b
    # Random ends so the model does not learn that a cut always sits at one side.
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def create_nsp_instances(sentences, random_sentences, max_tokens, rng, short_seq_prob=0.1):
  """Sentence pairs from one document (token-id lists per sentence); half get a random B."""
  if max_tokens < 2:
    raise ValueError(f"max_tokens={max_tokens} must be >= 2 to hold one token of A and of B")

  def target_length():
    # Mostly fill the sequence; sometimes go short so fine-tuning on short inputs is not new.
    if rng.random() < short_seq_prob:
      return int(rng.integers(2, max_tokens + 1))
    return max_tokens

  instances = []
  target = target_length()
  chunk, chunk_len, i = [], 0, 0
  while i < len(sentences):
    chunk.append(sentences[i])
    chunk_len += len(sentences[i])
    i += 1
    if chunk_len < target and i < len(sentences):
      continue
    a_end = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
    tokens_a = [t for s in chunk[:a_end] for t in s]
    if len(chunk) == 1 or rng.random() < 0.5:
      is_next = 0
      other = random_sentences(rng)
      start = int(rng.integers(len(other))) if other else 0
      tokens_b = []
      for s in other[start:]:
        tokens_b.extend(s)
        if len(tokens_b) >= target - len(tokens_a):
          break
      # The chunk's sentences after A were not used: walk them again so no text is wasted.
      i -= len(chunk) - a_end
    else:
      is_next = 1
      tokens_b = [t for s in chunk[a_end:] for t in s]
    _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
    if tokens_a and tokens_b:
      instances.append({"tokens_a": tokens_a, "tokens_b": tokens_b, "is_next": is_next})
    chunk, chunk_len = [], 0
    target = target_length()
  return instances


def assemble_pair(tokens_a, tokens_b, cls_id, sep_id, seq_len):
  """[CLS] A [SEP] B [SEP], zero-padded to seq_len, with token types, segment ids and positions."""
  tokens = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
  n, n_first = len(tokens), len(tokens_a) + 2
  if n > seq_len:
    raise ValueError(f"pair of {len(tokens_a)}+{len(tokens_b)} tokens needs {n} > {seq_len=}")
  inputs = np.zeros(seq_len, np.int32)
  inputs[:n] = tokens
  token_types = np.zeros(seq_len, np.int32)
  token_types[n_first:n] = 1
  segment_ids = np.zeros(seq_len, np.int32)
  segment_ids[:n] = 1
  positions = np.zeros(seq_len, np.int32)
  positions[:n] = np.arange(n)
  return {"inputs": inputs, "token_types": token_types, "segment_ids": segment_ids,
          "positions": positions}


def mask_tokens(inputs, segment_ids, rng, *, mask_id, vocab_size, special_ids, mask_prob=0.15):
  """BERT 80/10/10 masking of (seq,) or (batch, seq) ids -> (masked inputs, targets; 0 = none)."""
  inputs = np.asarray(inputs)
  rows = np.atleast_2d(inputs)  # (batch, seq)
  special = np.asarray(list(special_ids), np.int64)
  candidates = (np.atleast_2d(segment_ids) != 0) & ~np.isin(rows, special)
  n_candidates = candidates.sum(-1)
  # A fixed count per row (not a coin per token) keeps every row's share of the loss the same.
  n_chosen = np.where(n_candidates > 0, np.maximum(1, np.rint(mask_prob * n_candidates)), 0)
  # Uniform sample without replacement per row: the n_chosen candidates with the smallest keys.
  keys = np.where(candidates, rng.random(rows.shape), np.inf)
  ranks = np.argsort(np.argsort(keys, axis=-1), axis=-1)
  chosen = ranks < n_chosen[:, None]

  u = rng.random(rows.shape)
  to_mask = chosen & (u < 0.8)
  to_random = chosen & (u >= 0.8) & (u < 0.9)
  replacements = np.setdiff1d(np.arange(1, vocab_size), special)
  if replacements.size == 0:
    raise ValueError(f"vocab_size={vocab_size} leaves no non-special ids for random replacement")
  masked = rows.astype(np.int32)  # a copy: the caller's array is left alone
  masked[to_mask] = mask_id
  masked[to_random] = rng.choice(replacements, size=int(to_random.sum()))
  targets = np.where(chosen, rows, 0).astype(np.int32)
  return masked.reshape(inputs.shape), targets.reshape(inputs.shape)
