"""Fill in the middle (FIM; Bavarian et al., 2022): causal LM on documents whose middle has been
moved to the end, so a decoder learns to write a gap from the text on both sides of it.

With probability `fim.rate` a document's tokens are cut at two random points into prefix, middle
and suffix and reordered prefix-suffix-middle (PSM) behind three sentinels, the ids at the end
of the vocabulary (config.extra_ids >= 3: <PRE> the last id, then <SUF>, then <MID>):

  text     The cat sat on the mat
  row      <PRE> The cat <SUF> the mat <MID> sat on </s>

the other documents stay as causal LM has them. Rows are then shifted and packed exactly as
causal_lm's; every token is scored. Cuts are drawn per document and epoch (seeded by the
config's seed), so each epoch reorders each document anew; evaluation uses epoch 0's.
At inference, `<PRE> prefix <SUF> suffix <MID>` is the prompt and the middle is generated up to
</s>.
"""
import numpy as np

from llm.data import batching, packing
from llm.tasks import Task, causal_lm

SENTINELS = ("<PRE>", "<SUF>", "<MID>")


def sentinel_ids(config):
  """<PRE>, <SUF>, <MID>: the last three ids of the model's vocabulary."""
  top = config.vocab_size + config.extra_ids - 1
  return top, top - 1, top - 2


def reorder(ids, cuts, sentinels):
  """prefix, middle, suffix = ids cut at `cuts` (two positions, in order) -> the PSM sequence."""
  (first, second), (pre, suf, mid) = cuts, sentinels
  return [pre, *ids[:first], suf, *ids[second:], mid, *ids[first:second]]


def rows(docs, all_docs, config, tok, train):
  sentinels = sentinel_ids(config)

  def example(step, item):
    doc_index, text = item[0], item[1]["text"]
    epoch = step // len(all_docs) if train else 0
    rng = np.random.default_rng([config.seed, epoch, doc_index])
    ids = tok.encode(text)
    if rng.random() < config.fim.rate:
      ids = reorder(ids, np.sort(rng.integers(0, len(ids) + 1, size=2)), sentinels)
    ids = np.asarray([tok.bos_id] * tok.add_bos + ids + [tok.eos_id], np.int32)
    return {"inputs": ids[:-1], "targets": ids[1:]}

  examples = docs.map_with_index(example).to_iter_dataset(batching.READ_OPTIONS)
  return packing.pack(examples, config.seq_len)


def check(config):
  if config.extra_ids < len(SENTINELS):
    raise ValueError(f"extra_ids={config.extra_ids}: fill_in_middle needs {len(SENTINELS)} ids "
                     f"past the tokenizer's for {', '.join(SENTINELS)}; set "
                     f"--config.extra_ids={len(SENTINELS)}")


TASK = Task(name="fill_in_middle", families=("decoder",), heads=lambda config: ("lm",),
            rows=rows, normalizers=causal_lm.normalizers, loss_fn=causal_lm.loss_fn,
            summarize=causal_lm.summarize, check=check, extra_ids=True,
            # The fraction of documents reordered (the paper's FIM rate; 0 = causal LM).
            config={"fim": dict(rate=0.5)}, ranges={"fim.rate": "[0, 1]"},
            stream_keys=("fim",))
