"""BERT example construction: sentence splitting, NSP pairs, pair layout and 80/10/10 masking."""
import numpy as np
import pytest

from llm.data.bert import assemble_pair, create_nsp_instances, mask_tokens, split_sentences

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIALS = (PAD, CLS, SEP, MASK)
VOCAB = 1000


# --- split_sentences ---------------------------------------------------------------------------

def test_split_sentences():
  text = ('He said "Stop." Then he left! Was it 3.5 km, e.g. far? 42 people came.\n'
          "\n   Prices rose (a lot.) Nobody knew why.  \n  A last line without a stop  \n")
  assert split_sentences(text) == [
      'He said "Stop."', "Then he left!", "Was it 3.5 km, e.g. far?", "42 people came.",
      "Prices rose (a lot.)", "Nobody knew why.", "A last line without a stop"]
  assert split_sentences("  \n\n ") == []


# --- NSP instances -----------------------------------------------------------------------------

def _doc(d, lengths):
  """Sentence s of document d holds tokens 10000*(d+1) + 10*s + k: each token names its origin."""
  return [[10000 * (d + 1) + 10 * s + k for k in range(n)] for s, n in enumerate(lengths)]


def _doc_of(t):
  return t // 10000 - 1


def _sentence_of(t):
  return (t % 10000) // 10


def _instances(docs, max_tokens, seed, short_seq_prob=0.1):
  """Instances of every document, each tagged with the document it was built from."""
  rng = np.random.default_rng(seed)
  out = []
  for d, doc in enumerate(docs):
    def random_sentences(rng, d=d):
      other = rng.integers(len(docs) - 1)
      return docs[other + (other >= d)]
    for inst in create_nsp_instances(doc, random_sentences, max_tokens, rng, short_seq_prob):
      out.append((d, inst))
  return out


def _is_contiguous(tokens, doc):
  """True when tokens are one unbroken run of the document's token stream."""
  stream = [t for s in doc for t in s]
  start = stream.index(tokens[0])
  return stream[start:start + len(tokens)] == tokens


def test_nsp_statistics_and_invariants():
  rng = np.random.default_rng(0)
  docs = [_doc(d, rng.integers(1, 7, size=400)) for d in range(40)]
  max_tokens = 40
  instances = _instances(docs, max_tokens, seed=1)
  assert len(instances) > 1500
  is_next = np.array([inst["is_next"] for _, inst in instances])
  assert abs(is_next.mean() - 0.5) < 0.05
  for d, inst in instances:
    a, b = inst["tokens_a"], inst["tokens_b"]
    assert a and b and len(a) + len(b) <= max_tokens
    # Truncation only trims the ends of A and B, so each stays one run of its document.
    assert {_doc_of(t) for t in a} == {d} and _is_contiguous(a, docs[d])
    b_docs = {_doc_of(t) for t in b}
    assert len(b_docs) == 1
    b_doc = b_docs.pop()
    assert _is_contiguous(b, docs[b_doc])
    if inst["is_next"]:
      assert b_doc == d and max(map(_sentence_of, a)) < min(map(_sentence_of, b))
    else:
      assert b_doc != d
  # Short targets: some pairs well under the budget even away from document ends.
  lengths = np.array([len(i["tokens_a"]) + len(i["tokens_b"]) for _, i in instances])
  assert 0.03 < np.mean(lengths < max_tokens // 2) < 0.2


def test_nsp_exact_layout_without_truncation():
  # Sentences of 3 tokens and a budget of 30: no pair ever needs truncation, so the junction and
  # the "put back" of unused sentences can be checked exactly.
  docs = [_doc(d, [3] * 200) for d in range(6)]
  instances = _instances(docs, max_tokens=30, seed=2)
  for d in range(len(docs)):
    covered = []
    for doc_id, inst in instances:
      if doc_id != d:
        continue
      a, b = inst["tokens_a"], inst["tokens_b"]
      assert len(a) % 3 == 0 and len(b) % 3 == 0 and len(a) + len(b) <= 30
      covered += a
      if inst["is_next"]:
        assert _sentence_of(b[0]) == _sentence_of(a[-1]) + 1 and _doc_of(b[0]) == d
        covered += b
    # Every sentence of the document lands in exactly one A or is_next B, in order.
    assert covered == [t for s in docs[d] for t in s]


def test_nsp_fills_budget_without_short_targets():
  rng = np.random.default_rng(3)
  docs = [_doc(d, rng.integers(1, 7, size=300)) for d in range(4)]
  for d, inst in _instances(docs, max_tokens=25, seed=4, short_seq_prob=0.0):
    n = len(inst["tokens_a"]) + len(inst["tokens_b"])
    if inst["is_next"]:  # full budget unless the chunk ran into the document's end
      assert n == 25 or inst["tokens_b"][-1] == docs[d][-1][-1]


def test_nsp_single_sentence_documents():
  docs = [_doc(0, [5]), _doc(1, [50]), _doc(2, [4, 4, 4])]
  instances = _instances(docs, max_tokens=20, seed=5)
  by_doc = {}
  for d, inst in instances:
    by_doc.setdefault(d, []).append(inst)
  for d in (0, 1):  # one sentence: one pair, necessarily with a random B
    (inst,) = by_doc[d]
    assert inst["is_next"] == 0 and inst["tokens_a"] and inst["tokens_b"]
    assert len(inst["tokens_a"]) + len(inst["tokens_b"]) <= 20
  assert by_doc[0][0]["tokens_a"] == docs[0][0]
  assert _is_contiguous(by_doc[1][0]["tokens_a"], docs[1])


def test_nsp_deterministic():
  docs = [_doc(d, [2, 5, 3, 7, 1, 4] * 10) for d in range(3)]
  assert _instances(docs, 16, seed=7) == _instances(docs, 16, seed=7)
  assert _instances(docs, 16, seed=7) != _instances(docs, 16, seed=8)


# --- assemble_pair -----------------------------------------------------------------------------

def test_assemble_pair_layout():
  out = assemble_pair([11, 12], [21, 22, 23], CLS, SEP, seq_len=10)
  np.testing.assert_array_equal(out["inputs"], [1, 11, 12, 2, 21, 22, 23, 2, 0, 0])
  np.testing.assert_array_equal(out["token_types"], [0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out["segment_ids"], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out["positions"], [0, 1, 2, 3, 4, 5, 6, 7, 0, 0])
  assert all(v.dtype == np.int32 and v.shape == (10,) for v in out.values())
  exact = assemble_pair([11, 12], [21, 22, 23], CLS, SEP, seq_len=8)
  np.testing.assert_array_equal(exact["inputs"], [1, 11, 12, 2, 21, 22, 23, 2])
  with pytest.raises(ValueError):
    assemble_pair([11, 12], [21, 22, 23], CLS, SEP, seq_len=7)


# --- mask_tokens -------------------------------------------------------------------------------

def _masking_batch(rows, seq_len, seed, n_fixed=128):
  """Rows of [CLS] text [SEP] text [SEP] + padding; half with n_fixed candidates, half random."""
  rng = np.random.default_rng(seed)
  inputs = np.zeros((rows, seq_len), np.int32)
  segment_ids = np.zeros((rows, seq_len), np.int32)
  n_text = rng.integers(0, seq_len - 2, size=rows)
  n_text[: rows // 2] = n_fixed
  for r, n in enumerate(n_text):
    text = rng.integers(len(SPECIALS), VOCAB, size=n)
    row = [CLS, *text[: n // 2], SEP, *text[n // 2:], SEP]
    inputs[r, :len(row)] = row
    segment_ids[r, :len(row)] = 1
  return inputs, segment_ids, n_text


def _mask(inputs, segment_ids, seed):
  return mask_tokens(inputs, segment_ids, np.random.default_rng(seed), mask_id=MASK,
                     vocab_size=VOCAB, special_ids=SPECIALS)


def test_mask_tokens_statistics():
  inputs, segment_ids, n_text = _masking_batch(2000, 134, seed=0)
  original = inputs.copy()
  masked, targets = _mask(inputs, segment_ids, seed=1)
  np.testing.assert_array_equal(inputs, original)  # not modified in place
  assert masked.dtype == np.int32 and targets.dtype == np.int32 and masked.shape == inputs.shape

  chosen = targets != 0
  expected = [max(1, round(0.15 * n)) if n else 0 for n in n_text]
  np.testing.assert_array_equal(chosen.sum(1), expected)
  assert (chosen.sum(1)[n_text == 128] == 19).all()
  # Specials and padding are never chosen, and untouched positions keep their token.
  assert not (chosen & np.isin(inputs, SPECIALS)).any() and not (chosen & (segment_ids == 0)).any()
  np.testing.assert_array_equal(masked[~chosen], inputs[~chosen])
  np.testing.assert_array_equal(targets[chosen], inputs[chosen])

  new, old = masked[chosen], inputs[chosen]
  is_mask, unchanged = new == MASK, new == old
  is_random = ~is_mask & ~unchanged  # a random draw equal to the original counts as unchanged
  assert abs(is_mask.mean() - 0.8) < 0.02
  assert abs(is_random.mean() - 0.1) < 0.02
  assert abs(unchanged.mean() - 0.1) < 0.02
  assert not np.isin(new[is_random], SPECIALS).any() and (new[is_random] > 0).all()
  assert (new[is_random] < VOCAB).all()
  # Random replacements cover the vocabulary rather than a few ids.
  assert len(np.unique(new[is_random])) > 0.8 * (VOCAB - len(SPECIALS))


def test_mask_tokens_uniform_positions():
  # Every candidate position is chosen about equally often.
  inputs, segment_ids, _ = _masking_batch(4000, 134, seed=2)
  inputs, segment_ids = inputs[:2000], segment_ids[:2000]  # the rows with 128 candidates
  _, targets = _mask(inputs, segment_ids, seed=3)
  rate = (targets != 0).mean(0)[segment_ids[0] == 1]
  rate = rate[~np.isin(inputs[0][segment_ids[0] == 1], SPECIALS)]
  assert abs(rate.mean() - 19 / 128) < 1e-6 and np.abs(rate - 19 / 128).max() < 0.04


def test_mask_tokens_1d_and_determinism():
  inputs, segment_ids, _ = _masking_batch(3, 40, seed=4, n_fixed=30)
  masked, targets = _mask(inputs[0], segment_ids[0], seed=5)
  assert masked.shape == targets.shape == (40,)
  n = int((segment_ids[0] != 0).sum()) - 3
  assert (targets != 0).sum() == max(1, round(0.15 * n))
  for a, b in zip(_mask(inputs, segment_ids, seed=6), _mask(inputs, segment_ids, seed=6)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(_mask(inputs, segment_ids, seed=6)[1], _mask(inputs, segment_ids, 7)[1])


def test_mask_tokens_no_candidates():
  inputs = np.array([[CLS, SEP, SEP, PAD], [CLS, 50, SEP, PAD]])
  segment_ids = np.array([[1, 1, 1, 0], [1, 1, 1, 0]])
  masked, targets = _mask(inputs, segment_ids, seed=0)
  np.testing.assert_array_equal(targets, [[0, 0, 0, 0], [0, 50, 0, 0]])  # max(1, .) rounds up
  np.testing.assert_array_equal(masked[0], inputs[0])


def test_mask_tokens_random_ids_skip_padding_id():
  # Id 0 is padding even when the caller leaves it out of special_ids: never a replacement.
  rng = np.random.default_rng(0)
  inputs = rng.integers(4, 6, size=(500, 20))
  masked, targets = mask_tokens(inputs, np.ones_like(inputs), np.random.default_rng(1),
                                mask_id=MASK, vocab_size=6, special_ids=(CLS, SEP, MASK),
                                mask_prob=1.0)
  assert (targets == inputs).all()
  assert set(np.unique(masked)) == {MASK, 4, 5}
