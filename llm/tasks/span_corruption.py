"""T5 span corruption (Raffel et al., 2020): drop random spans of a text, predict them.

Each document is cut into pieces of `raw_length` tokens; in each piece a fraction
`noise_density` of the tokens, in spans of mean length `mean_span_length`, is replaced in the
encoder input by one sentinel per span (ids from the end of the vocabulary, the first span's
sentinel the last id); the target is each sentinel followed by the tokens it hides, then </s>:

  text     The cat sat on the mat and purred
  inputs   The cat <X> the mat <Y> purred </s>
  targets  <X> sat on <Y> and </s>

Rows pack several (inputs, targets) pairs into one row pair without splitting any, with segment
ids on both sides so each target segment reads only its own source. The decoder reads the targets
shifted right behind <s>. Loss and metrics are per target token, as for causal LM (perplexity of
the targets).
"""
import math

import numpy as np

from llm.data import batching, packing, tokenizer as tokenizer_lib
from llm.tasks import Task, causal_lm


def random_segmentation(rng, num_items, num_segments):
  """Lengths of `num_segments` non-empty runs that split `num_items` uniformly at random."""
  cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False)) + 1
  return np.diff(np.concatenate([[0], cuts, [num_items]]))


def _noise_tokens(length, density):
  return int(round(length * density))


def _span_count(num_noise, mean_span_length):
  return max(int(round(num_noise / mean_span_length)), 1)


def noise_spans(length, density, mean_span_length, rng):
  """(non-noise run lengths, noise span lengths): interleaved, a non-noise run first."""
  num_noise = min(max(_noise_tokens(length, density), 1), length - 1)
  num_spans = _span_count(num_noise, mean_span_length)
  num_spans = min(num_spans, num_noise, length - num_noise)
  return (random_segmentation(rng, length - num_noise, num_spans),
          random_segmentation(rng, num_noise, num_spans))


def corrupt(ids, density, mean_span_length, sentinel_ids, rng):
  """(inputs, targets) token lists of one piece of text, both ending with </s>."""
  keep, drop = noise_spans(len(ids), density, mean_span_length, rng)
  inputs, targets, at = [], [], 0
  for k, (n_keep, n_drop) in enumerate(zip(keep, drop)):
    inputs += ids[at:at + n_keep] + [sentinel_ids[k]]
    targets += [sentinel_ids[k]] + ids[at + n_keep:at + n_keep + n_drop]
    at += n_keep + n_drop
  return inputs + [tokenizer_lib.EOS], targets + [tokenizer_lib.EOS]


def lengths(seq_len, density, mean_span_length):
  """(raw piece length, longest target) such that a corrupted piece's inputs fill `seq_len`."""
  def sizes(raw):
    num_noise = _noise_tokens(raw, density)
    num_spans = _span_count(num_noise, mean_span_length)
    return raw - num_noise + num_spans + 1, num_noise + num_spans + 1
  raw = seq_len
  while sizes(raw + 1)[0] <= seq_len:
    raw += 1
  # Spans are rounded per piece: allow for one more span than the average piece has.
  return raw, sizes(raw)[1] + 1


def target_len(config):
  return lengths(config.seq_len, config.span_corruption.noise_density,
                 config.span_corruption.mean_span_length)[1]


def rows(docs, all_docs, config, tok, train):
  # Rows are seeded by their documents' indices, unique over shards.
  sc = config.span_corruption
  raw, longest = lengths(config.seq_len, sc.noise_density, sc.mean_span_length)
  vocab = config.vocab_size + config.extra_ids
  sentinels = list(range(vocab - 1, vocab - 1 - config.extra_ids, -1))

  def pairs(step, item):
    doc_index, text = item[0], item[1]["text"]
    epoch = step // len(all_docs) if train else 0
    rng = np.random.default_rng([config.seed, epoch, doc_index])
    ids = tok.encode(text)
    out = []
    for start in range(0, len(ids), raw):
      piece = ids[start:start + raw]
      if len(piece) < 2:
        continue
      inputs, targets = corrupt(piece, sc.noise_density, sc.mean_span_length, sentinels, rng)
      out.append({"inputs": np.asarray(inputs, np.int32),
                  "decoder_inputs": np.asarray([tokenizer_lib.BOS] + targets[:-1], np.int32),
                  "targets": np.asarray(targets, np.int32)})
    return out

  examples = packing.flatten(docs.map_with_index(pairs).to_iter_dataset(batching.READ_OPTIONS))
  return packing.pack_pairs(examples, config.seq_len, longest)


def check(config):
  sc = config.span_corruption
  raw = lengths(config.seq_len, sc.noise_density, sc.mean_span_length)[0]
  noise = _noise_tokens(raw, sc.noise_density)
  if sc.mean_span_length > max(noise, 1):
    raise ValueError(f"span_corruption.mean_span_length={sc.mean_span_length} is longer than the "
                     f"{noise} noise tokens of a {raw}-token piece, so every piece would get one "
                     f"span of {noise}; use at most {max(noise, 1)} or a larger seq_len")
  spans = math.ceil(raw * sc.noise_density / sc.mean_span_length) + 1
  if config.extra_ids < spans:
    raise ValueError(f"extra_ids={config.extra_ids} sentinels are too few for {spans} spans per "
                     f"{raw}-token piece; set --config.extra_ids={spans} or more")


TASK = Task(name="span_corruption", families=("encoder_decoder",), heads=lambda config: ("lm",),
            rows=rows, normalizers=causal_lm.normalizers, loss_fn=causal_lm.loss_fn,
            summarize=causal_lm.summarize, check=check, extra_ids=True,
            # The fraction of tokens dropped, and the mean length of a dropped span (T5).
            config={"span_corruption": dict(noise_density=0.15, mean_span_length=3.0)},
            ranges={"span_corruption.noise_density": "(0, 1)",
                    "span_corruption.mean_span_length": "[1, inf)"},
            stream_keys=("span_corruption",))
