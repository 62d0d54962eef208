"""Batches: a task's rows -> global numpy batches, for training (an endless, checkpointable
grain iterator) and evaluation (a split once, every row once).

Every random choice is seeded by (config.seed, epoch, document index), and the iterator's state
(a few integers per input shard) is saved in each checkpoint, so a resumed run sees exactly the
batches an uninterrupted one would. The global batch is `config.input_shards` streams side by
side, each built only by the processes whose devices hold rows of it, so runs give the same
losses on any number of processes."""
import itertools
import math

import grain
import numpy as np

from llm import multihost, runlog
from llm.data.corpora import documents
from llm.data.mixture import Mixture
from llm.data.position import MissingShard


# Per-document work (tokenizing, NSP pairs, masking) runs ahead on a few threads. grain's default
# (16 threads, 500 documents ahead) starves the training step on small machines and makes every
# restore rebuild hundreds of documents.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def train_iterator(config, task, tok, builder, rows=None):
  """An endless, checkpointable iterator of global numpy batches of `task`'s rows.

  The batch is config.input_shards streams side by side: shard s reads the documents s, s + S,
  s + 2S, ... (S shards) in an order of its own, a fresh one each epoch, and fills the rows
  [s B/S, (s + 1) B/S) of every batch of B rows. Only the shards holding one of `rows` (the
  global batch rows this process's devices hold; default all) are built; the other rows are
  zeros, which steps.put_batch never reads. The global batch, every random choice in it (MLM
  masks, spans, NSP partners), the losses and the saved position (each shard's) are the same
  whatever the number of processes and however the mesh spreads over them, so a run resumes
  exactly on another process count. With one shard every process builds the whole batch.

  A mixture's shard builds each corpus's rows that way and interleaves them in the proportions
  of the corpora's weights (grain's mix: a fixed pattern, saved with the position).
  """
  corpora_ = builder.members if isinstance(builder, Mixture) else {builder.name: builder}
  docs = {name: training_documents(b, config) for name, b in corpora_.items()}
  for name, corpus_docs in docs.items():
    if len(corpus_docs) < config.input_shards:
      raise ValueError(f"input_shards={config.input_shards} is more than the {len(corpus_docs)} "
                       f"training documents of {name}; use at most {len(corpus_docs)}")
  per_shard = config.batch_size // config.input_shards
  shards = {}
  for shard in shards_of(config.input_shards, config.batch_size, rows):
    streams = []
    for corpus_docs in docs.values():
      mine, stream = shard_stream(corpus_docs, config, shard)
      streams.append(task.make_rows(docs=stream, all_docs=mine, config=config, tok=tok,
                                    train=True, shard=shard))
    rows_ = (grain.IterDataset.mix(streams, list(builder.weights.values()))
             if isinstance(builder, Mixture) else streams[0])
    shards[shard] = rows_.batch(per_shard, drop_remainder=True)
  batches = _SideBySide(shards, config.input_shards, config.batch_size)
  return iter(grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=2))


def training_documents(builder, config):
  """The train split's documents, or with config.train_examples = N > 0 a fixed sample of N of
  them (the first N in an order seeded by config.seed: each seed a different sample, and a
  seed's smaller samples inside its larger ones), e.g. to fine-tune on 100 labeled examples."""
  n = config.train_examples
  if n <= 0:
    return documents(builder, "train")
  total = len(builder.as_data_source("train"))
  if n > total:
    raise ValueError(f"train_examples={n} is more than the {total:,} training examples of "
                     f"{builder.name}; use at most {total}, or 0 for all")
  order = np.random.default_rng(config.seed).permutation(total)   # samples nest: 100 in 1,000
  return documents(builder, "train", picked=order[:n])


def shards_of(num_shards, batch_size, rows=None):
  """Of `num_shards` shards side by side in a batch of `batch_size` rows, those holding one of
  `rows` (default all), in order."""
  if rows is None:
    return list(range(num_shards))
  return sorted({r // (batch_size // num_shards) for r in rows})


def shard_stream(docs, config, shard):
  """(the input shard's documents, the endless stream of them it reads: a fresh order each
  epoch). The first shard's order is seeded by config.seed alone, so a run of one shard reads
  the documents as runs did before input shards existed; the others' by (seed, shard)."""
  mine = docs[shard::config.input_shards]
  seed = config.seed
  if shard:
    seed = int(np.random.SeedSequence([seed, shard]).generate_state(1)[0] >> 1)
  return mine, mine.shuffle(seed=seed).repeat(None)


class _SideBySide(grain.IterDataset):
  """Batches of some of `num_shards` input shards ({shard: dataset of batches}) -> global
  batches of `batch_size` rows, each shard's in its own place."""

  def __init__(self, shards, num_shards, batch_size):
    super().__init__(list(shards.values()))
    self._shards, self._num_shards, self._batch_size = shards, num_shards, batch_size

  def __iter__(self):
    return _SideBySideIterator({s: iter(d) for s, d in self._shards.items()}, self._num_shards,
                               self._batch_size)


class _SideBySideIterator(grain.DatasetIterator):
  def __init__(self, shards, num_shards, batch_size):
    super().__init__(list(shards.values()))
    self._shards, self._num_shards, self._batch_size = shards, num_shards, batch_size

  def __next__(self):
    parts = {s: next(it) for s, it in self._shards.items()}
    rows = self._batch_size // self._num_shards
    first = next(iter(parts.values()))
    batch = {k: np.zeros((self._batch_size,) + v.shape[1:], v.dtype) for k, v in first.items()}
    for s, part in parts.items():
      for k, v in part.items():
        batch[k][s * rows:(s + 1) * rows] = v
    return batch

  def get_state(self):
    return {"input_shards": self._num_shards,
            "shards": {str(s): it.get_state() for s, it in self._shards.items()}}

  def set_state(self, state):
    """Sets each built shard's position from a saved state (or several processes' states
    merged: see position.merge_states)."""
    if state["input_shards"] != self._num_shards:   # only with allow_changed_config
      runlog.log(f"warning: the data position was saved for input_shards="
                 f"{state['input_shards']}, not {self._num_shards}: the input streams start "
                 f"from their beginnings")
      return
    missing = [s for s in self._shards if str(s) not in state["shards"]]
    if missing:
      raise MissingShard(f"it holds no data position for input shard {missing[0]} of "
                         f"{self._num_shards}")
    for s, it in self._shards.items():
      it.set_state(state["shards"][str(s)])


def eval_batch_size(config):
  """Rows of an evaluation batch: the training step's micro-batch, what fits in memory."""
  return config.batch_size // config.optimizer.grad_accum_steps


def eval_shards(config, num_docs):
  """How many shards a split of `num_docs` documents is evaluated as: the largest divisor of
  both input_shards and the evaluation batch that leaves each shard at least two documents
  (NSP pairs need two); one with one input shard. It never depends on the process count."""
  most = math.gcd(config.input_shards, eval_batch_size(config))
  return max(d for d in range(1, most + 1) if most % d == 0 and (d == 1 or 2 * d <= num_docs))


def eval_batches(config, task, tok, builder, split="validation", rows=None):
  """The split's global batches (below); for a mixture, {corpus: its split's batches}."""
  if isinstance(builder, Mixture):
    return {name: _eval_batches(config, task, tok, member, split, rows)
            for name, member in builder.members.items()}
  return _eval_batches(config, task, tok, builder, split, rows)


def _eval_batches(config, task, tok, builder, split, rows):
  """The split's global batches of eval_batch_size(config) rows: every row once, the batches
  padded with empty rows. The split is read as eval_shards(...) shards E like training's
  input shards: shard s holds the documents s, s + E, ... and fills the rows
  [s b/E, (s + 1) b/E) of every batch of b rows. Only the shards holding one of `rows` (the
  batch rows this process's devices hold; default all) are built, the other rows are left
  empty; the processes agree on the number of batches (the longest shard's), since the jitted
  eval step is collective."""
  docs = documents(builder, split)
  num_shards = eval_shards(config, len(docs))
  if num_shards < math.gcd(config.input_shards, eval_batch_size(config)):
    runlog.log(f"note: the {split} split's {len(docs)} documents are evaluated as {num_shards} "
               f"shards, not as input_shards={config.input_shards} (at least 2 documents each)")
  batch = eval_batch_size(config)
  per_shard = batch // num_shards
  # With eval_batches set, a shard's rows past that many batches are never read: not built.
  limit = config.eval_batches * per_shard if config.eval_batches > 0 else None
  built = {s: list(itertools.islice(task.make_rows(
               docs=docs[s::num_shards], all_docs=docs[s::num_shards], config=config, tok=tok,
               train=False, shard=s), limit))
           for s in shards_of(num_shards, batch, rows)}
  lengths = np.full(num_shards, -1, np.int32)   # rows per shard, -1 where another process knows
  for s, shard_rows in built.items():
    lengths[s] = len(shard_rows)
  lengths = multihost.largest(lengths)
  num_batches = int(-(-lengths.max() // per_shard))
  if config.eval_batches > 0:
    num_batches = min(num_batches, config.eval_batches)
  # Padding rows: no tokens, and label -1, which every task leaves out of its sums.
  if lengths.max() == 0:
    raise ValueError(f"the {split} split gives no {task.name} rows to evaluate on")
  first = next((r for shard_rows in built.values() for r in shard_rows[:1]), None)
  if first is None:   # this process's shards gave none: the split's first row shows the layout
    first = next(iter(task.make_rows(docs=docs, all_docs=docs, config=config, tok=tok,
                                     train=False, shard=0)))
  empty = {k: np.full_like(v, -1) if k.endswith(task.pad_with_minus_one) else np.zeros_like(v)
           for k, v in first.items()}
  batches = [{k: np.stack([empty[k]] * batch) for k in empty} for _ in range(num_batches)]
  for s, shard_rows in built.items():
    for i, row in enumerate(shard_rows[:num_batches * per_shard]):
      b, place = divmod(i, per_shard)
      for k, v in row.items():
        batches[b][k][s * per_shard + place] = v
  return batches
