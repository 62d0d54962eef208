"""Input pipeline: corpus -> documents -> a task's rows (tasks/*.py) -> batches.

Training data is a grain pipeline over a TFDS `array_record` data source. Every random choice is
seeded by (config.seed, epoch, document index), and the grain iterator's state (a few integers)
is saved in each checkpoint, so a resumed run sees exactly the batches an uninterrupted one would.
The global batch is `config.input_shards` streams side by side, each a process builds only if
its devices hold rows of it, so runs give the same losses on any number of processes. Shared row
tools (packing, flattening, padded BERT rows) live here; what a row holds is the task's business.
"""
import contextlib
import io
import math
import os
import pathlib
import sys
import time

import grain
import jax
import numpy as np
from absl import logging

from llm import lock, multihost, runlog
from llm.data import tokenizer as tokenizer_lib
from llm.data.position import MissingShard
from llm.data.builders import BUILDERS, FILE_BUILDERS

# Per-document work (tokenizing, NSP pairs, masking) runs ahead on a few threads. grain's default
# (16 threads, 500 documents ahead) starves the training step on small machines and makes every
# restore rebuild hundreds of documents.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def data_dir(config):
  """Where TFDS datasets and tokenizers are cached: config.data_dir, $LLM_DATA_DIR or
  ~/.cache/llm."""
  source = ("data_dir", config.data_dir) if config.data_dir else (
      ("$LLM_DATA_DIR", os.environ["LLM_DATA_DIR"]) if os.environ.get("LLM_DATA_DIR") else
      ("the default data_dir", "~/.cache/llm"))
  path = pathlib.Path(source[1]).expanduser().absolute()
  try:   # a read-only directory is fine (prepared data); one that cannot exist is not
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ValueError(f"{source[0]}={source[1]!r} cannot be used as a data directory "
                     f"({e.strerror}: {e.filename}); set --config.data_dir=DIR (or LLM_DATA_DIR) "
                     f"to a writable directory") from None
  return path


def corpus_builder(config):
  """The TFDS builder for config.corpus (not yet built). FILE_BUILDERS corpora (conll, squad)
  read the user's files named by config.data_files."""
  kwargs = dict(data_dir=str(data_dir(config) / "tfds"), file_format="array_record")
  if config.corpus in FILE_BUILDERS:
    paths = {split: path for split, path in config.data_files.items() if path}
    if not {"train", "validation"} <= set(paths):
      raise ValueError(f"corpus={config.corpus!r} reads your files: set --config.data_files.train"
                       f"=PATH and --config.data_files.validation=PATH (and optionally .test)")
    for split, path in paths.items():
      existing_file(path, f"data_files.{split}")
    return FILE_BUILDERS[config.corpus](paths=paths, **kwargs)
  if config.corpus in BUILDERS:
    return BUILDERS[config.corpus](**kwargs)
  raise ValueError(f"corpus={config.corpus!r}: expected one of "
                   f"{sorted(BUILDERS) + sorted(FILE_BUILDERS)}")


def _data_lock(config):
  """Runs started at once on one machine (or parallel test workers) build each corpus and
  tokenizer once, not twice into the same folder."""
  return lock.waiting(data_dir(config) / ".prepare.lock")


def prepare_corpus(config):
  """The TFDS builder for config.corpus, built from local files on first use."""
  built = []
  def prepare():
    with _data_lock(config):
      builder = corpus_builder(config)   # made under the lock: sees what another run just built
      if not _quiet_tfds(builder.is_prepared):
        _build(builder)
      built.append(builder)
  _on_first_process(prepare, "corpus")
  # The other processes' builders are made after process 0 wrote the data: they read it afresh.
  return built[0] if built else corpus_builder(config)


def _quiet_tfds(fn):
  """fn() without TFDS's console output: its "Downloading and preparing dataset Unknown size"
  banner (nothing is downloaded), its warnings about a folder it is still building, and (unless
  stderr is a terminal, where they redraw in place) its progress bars."""
  import tensorflow_datasets as tfds
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  tfds.display_progress_bar(sys.stderr.isatty())
  captured = io.StringIO()
  try:
    with contextlib.redirect_stdout(captured):
      return fn()
  except Exception:
    sys.stdout.write(captured.getvalue())   # it may say what went wrong
    raise
  finally:
    logging.set_verbosity(verbosity)
    tfds.display_progress_bar(True)   # TFDS's default, for whoever uses it next


def _build(builder):
  runlog.log(f"preparing corpus {builder.name} in {builder.data_dir} (first use; later runs "
              f"reuse it)")
  start = time.perf_counter()
  _quiet_tfds(builder.download_and_prepare)
  sizes = ", ".join(f"{len(builder.as_data_source(split)):,} {split}"
                    for split in builder.info.splits)
  runlog.log(f"prepared corpus {builder.name}: {sizes} examples in "
              f"{time.perf_counter() - start:.0f} s")


def _on_first_process(fn, name):
  """Runs a one-time cache build on process 0 while the other processes wait for it."""
  if jax.process_index() == 0:
    fn()
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"llm.pipeline.{name}")


def existing_file(path, key):
  """`path` (a config value) as a Path, if it names a file; FileNotFoundError naming `key`."""
  found = pathlib.Path(path).expanduser()
  if found.is_dir():
    raise FileNotFoundError(f"{key}={path!r} is a directory; it names a file")
  if not found.is_file():
    raise FileNotFoundError(f"{key}={path!r} does not exist")
  return found


def load_tokenizer(config, builder):
  """config.tokenizer.path if set, else a SentencePiece model trained once on the train split.
  `tokenizer.kind="wordpiece"` loads a Hugging Face BERT vocabulary from the folder `path`,
  `"gguf"` the byte-level BPE vocabulary in a GGUF file's metadata (path, or 'smollm2')."""
  cfg = config.tokenizer
  if cfg.kind == "wordpiece":
    from llm.data.wordpiece import WordPieceTokenizer
    tok = WordPieceTokenizer(cfg.path)
  elif cfg.kind == "gguf":
    from llm.convert.gguf_llama import GgufFile
    from llm.data.bpe import BpeTokenizer
    tok = BpeTokenizer(GgufFile(cfg.path))
  elif cfg.kind != "sentencepiece":
    raise ValueError(f"tokenizer.kind={cfg.kind!r}: expected 'sentencepiece', 'wordpiece' or "
                     f"'gguf'")
  elif cfg.path:
    path = existing_file(cfg.path, "tokenizer.path")
  else:
    # Your files' tokenizer is named after their contents, as their prepared data is.
    corpus = (f"{config.corpus}_{builder.builder_config.name}" if config.corpus in FILE_BUILDERS
              else config.corpus)
    path = data_dir(config) / "tokenizers" / f"{corpus}_{cfg.model_type}_{config.vocab_size}.model"
    def train_tokenizer():
      with _data_lock(config):
        if path.is_file():
          return
        runlog.log(f"training a {cfg.model_type} SentencePiece tokenizer ({config.vocab_size:,} "
                    f"pieces) on the train split (first use; saved to {path})")
        source = builder.as_data_source("train")
        texts = (text_of(source[i]) for i in range(len(source)))
        tokenizer_lib.train((as_text(t) for t in texts), config.vocab_size, cfg.model_type, path)
    _on_first_process(train_tokenizer, "tokenizer")
  if cfg.kind == "sentencepiece":
    try:
      tok = tokenizer_lib.Tokenizer(path)
    except (RuntimeError, OSError) as e:   # not a SentencePiece model: SentencePiece's own words
      raise ValueError(f"tokenizer {path} is not a SentencePiece model ({str(e).strip()[:160]}); "
                       f"name a .model file SentencePiece wrote, or leave tokenizer.path empty "
                       f"to train one") from None
    tok.extra_ids = config.get("extra_ids", 0)
  if tok.vocab_size != config.vocab_size:
    raise ValueError(f"tokenizer {tok.path} has {tok.vocab_size} pieces but vocab_size="
                     f"{config.vocab_size}; set --config.vocab_size={tok.vocab_size}")
  return tok


def num_classes(builder):
  """The number of classes of the dataset's `label` (or `tags`) feature, or 0 if it has none."""
  names = label_names(builder)
  return 0 if names is None else len(names)


def label_names(builder):
  """The class names of the dataset's `label` or `tags` feature, or None."""
  features = builder.info.features
  if "label" in features:
    return features["label"].names
  if "tags" in features:
    return features["tags"].feature.names
  return None


def text_of(example):
  """The running text of an example: its `text`, its `context` (QA; questions are short and
  repeat), its `source` and `target` (seq2seq), or its `tokens` joined by spaces."""
  if "text" in example:
    return example["text"]
  if "source" in example:
    return f"{as_text(example['source'])}\n{as_text(example['target'])}"
  if "context" in example:
    return example["context"]
  return " ".join(as_text(t) for t in example["tokens"])


def as_text(value):
  """A TFDS Text value (bytes, or already str) as str; bytes that are not UTF-8 become U+FFFD."""
  return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def decode_example(example):
  """A TFDS example with its Text features (also inside sequences and nested dicts) as str."""
  out = {}
  for k, v in example.items():
    if isinstance(v, bytes):
      v = as_text(v)
    elif isinstance(v, dict):
      v = decode_example(v)
    elif isinstance(v, (list, tuple, np.ndarray)) and len(v) and isinstance(v[0], bytes):
      v = [as_text(t) for t in v]   # a sequence of Text
    out[k] = v
  return out


def documents(builder, split):
  """(doc_index, example) pairs of a split, as a random-access dataset.

  Text features are decoded to str; everything else is as TFDS stores it. The index is the
  document's own in every epoch: grain hands a repeated dataset's map the index counted over
  all epochs (i + epoch x length), which seeded static masks and NSP pairs differently in each
  epoch and let NSP draw a document's own sentences as its random partner."""
  source = builder.as_data_source(split)
  num_docs = len(source)
  return grain.MapDataset.source(source).map_with_index(
      lambda i, ex: (i % num_docs, decode_example(ex)))


def pack(dataset, seq_len, keys=("inputs", "targets")):
  """Concat-then-split packing into full rows of `keys`; every piece of a different document gets
  its own segment id, and positions restart at 0 in each (attention never crosses documents)."""
  packed = grain.experimental.ConcatThenSplitIterDataset(
      dataset, length_struct={k: seq_len for k in keys})
  def rename(r):
    out = {k: r[k] for k in keys}
    out.update(segment_ids=r[f"{keys[0]}_segment_ids"], positions=r[f"{keys[0]}_positions"])
    return out
  return packed.map(rename)


def pack_pairs(dataset, seq_len, target_len):
  """Encoder-decoder packing: whole (inputs, decoder_inputs, targets) examples placed first-fit
  into rows of seq_len source and target_len target tokens, never split; segment ids number the
  examples of a row alike on both sides, positions restart at 0 in each."""
  packed = grain.experimental.FirstFitPackIterDataset(
      dataset, length_struct={"inputs": seq_len, "decoder_inputs": target_len,
                              "targets": target_len},
      num_packing_bins=4, shuffle_bins=False)
  return packed.map(lambda r: {
      "inputs": r["inputs"], "segment_ids": r["inputs_segment_ids"],
      "positions": r["inputs_positions"], "decoder_inputs": r["decoder_inputs"],
      "decoder_segment_ids": r["decoder_inputs_segment_ids"],
      "decoder_positions": r["decoder_inputs_positions"], "targets": r["targets"]})


class _ListFlatten(grain.experimental.FlatMapTransform):
  """Lists of examples -> examples (grain keeps the position inside a list in its state)."""
  max_fan_out = 1 << 20

  def flat_map(self, element):
    return element


def flatten(dataset):
  return grain.experimental.FlatMapIterDataset(dataset, _ListFlatten())


def padded_row(ids, seq_len):
  """One BERT input row holding `ids` (one segment, token type 0), padded with 0 to seq_len."""
  row = {"inputs": np.zeros(seq_len, np.int32), "segment_ids": np.zeros(seq_len, np.int32),
         "positions": np.zeros(seq_len, np.int32), "token_types": np.zeros(seq_len, np.int32)}
  row["inputs"][:len(ids)] = ids
  row["segment_ids"][:len(ids)] = 1
  row["positions"][:len(ids)] = np.arange(len(ids))
  return row


def encode_single(tok, text, seq_len):
  """[CLS] text [SEP], truncated to seq_len and padded with 0: the BERT input for one text."""
  return padded_row([tok.cls_id] + tok.encode(text)[:seq_len - 2] + [tok.sep_id], seq_len)


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
  """
  docs = documents(builder, "train")
  if len(docs) < config.input_shards:
    raise ValueError(f"input_shards={config.input_shards} is more than the {len(docs)} training "
                     f"documents; use at most {len(docs)}")
  per_shard = config.batch_size // config.input_shards
  shards = {}
  for shard in shards_of(config.input_shards, config.batch_size, rows):
    mine, stream = shard_stream(docs, config, shard)
    shards[shard] = task.rows(stream, mine, config, tok, train=True, shard=shard).batch(
        per_shard, drop_remainder=True)
  batches = _SideBySide(shards, config.input_shards, config.batch_size)
  return iter(grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=2))


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
  built = {s: list(task.rows(docs[s::num_shards], docs[s::num_shards], config, tok, train=False,
                             shard=s)) for s in shards_of(num_shards, batch, rows)}
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
    first = next(iter(task.rows(docs, docs, config, tok, train=False)))
  empty = {k: np.full_like(v, -1) if k.endswith(task.pad_with_minus_one) else np.zeros_like(v)
           for k, v in first.items()}
  batches = [{k: np.stack([empty[k]] * batch) for k in empty} for _ in range(num_batches)]
  for s, shard_rows in built.items():
    for i, row in enumerate(shard_rows[:num_batches * per_shard]):
      b, place = divmod(i, per_shard)
      for k, v in row.items():
        batches[b][k][s * per_shard + place] = v
  return batches
