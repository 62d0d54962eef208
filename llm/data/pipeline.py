"""Input pipeline: corpus -> tokens -> examples (causal LM or BERT) -> packed rows -> batches.

Training data is a grain pipeline over a TFDS `array_record` data source. Every random choice is
seeded by (config.seed, epoch, document index), and the grain iterator's state (a few integers)
is saved in each checkpoint, so a resumed run sees exactly the batches an uninterrupted one would.
Each process reads only its own slice of the documents (`jax.process_index()`).
"""
import os
import pathlib
import zlib

import grain
import jax
import numpy as np

from llm.data import bert, qa
from llm.data import tokenizer as tokenizer_lib
from llm.data.builders import BUILDERS, FILE_BUILDERS

# Packed rows: ConcatThenSplit fills every row completely; pieces of different documents get
# different segment ids, so attention never crosses a document boundary.
PACKED_KEYS = ("inputs", "targets")
# Per-document work (tokenizing, NSP pairs, masking) runs ahead on a few threads. grain's default
# (16 threads, 500 documents ahead) starves the training step on small machines and makes every
# restore rebuild hundreds of documents.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def data_dir(config):
  """Where TFDS datasets and tokenizers are cached: config.data_dir, $LLM_DATA_DIR or ~/.cache/llm."""
  path = config.data_dir or os.environ.get("LLM_DATA_DIR") or "~/.cache/llm"
  return pathlib.Path(path).expanduser().absolute()


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
      if not pathlib.Path(path).expanduser().is_file():
        raise FileNotFoundError(f"data_files.{split}={path!r} does not exist")
    return FILE_BUILDERS[config.corpus](paths=paths, **kwargs)
  if config.corpus in BUILDERS:
    return BUILDERS[config.corpus](**kwargs)
  raise ValueError(f"corpus={config.corpus!r}: expected one of "
                   f"{sorted(BUILDERS) + sorted(FILE_BUILDERS)}")


def prepare_corpus(config):
  """The TFDS builder for config.corpus, built from local files on first use."""
  builder = corpus_builder(config)
  _on_first_process(lambda: builder.is_prepared() or builder.download_and_prepare(), "corpus")
  return builder


def _on_first_process(fn, name):
  """Runs a one-time cache build on process 0 while the other processes wait for it."""
  if jax.process_index() == 0:
    fn()
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"llm.pipeline.{name}")


def load_tokenizer(config, builder):
  """config.tokenizer.path if set, else a SentencePiece model trained once on the train split.
  `tokenizer.kind="wordpiece"` loads a Hugging Face BERT vocabulary from the folder `path`."""
  cfg = config.tokenizer
  if cfg.kind == "wordpiece":
    from llm.data.wordpiece import WordPieceTokenizer
    tok = WordPieceTokenizer(cfg.path)
  elif cfg.kind != "sentencepiece":
    raise ValueError(f"tokenizer.kind={cfg.kind!r}: expected 'sentencepiece' or 'wordpiece'")
  elif cfg.path:
    path = pathlib.Path(cfg.path).expanduser()
    if not path.is_file():
      raise FileNotFoundError(f"tokenizer.path={cfg.path!r} does not exist")
  else:
    path = data_dir(config) / "tokenizers" / f"{config.corpus}_{cfg.model_type}_{config.vocab_size}.model"
    def train_tokenizer():
      if path.is_file():
        return
      source = builder.as_data_source("train")
      texts = (text_of(source[i]) for i in range(len(source)))
      tokenizer_lib.train((t.decode(errors="replace") if isinstance(t, bytes) else t
                           for t in texts), config.vocab_size, cfg.model_type, path)
    _on_first_process(train_tokenizer, "tokenizer")
  if cfg.kind == "sentencepiece":
    tok = tokenizer_lib.Tokenizer(path)
  if tok.vocab_size != config.vocab_size:
    raise ValueError(f"tokenizer {tok.path} has {tok.vocab_size} pieces but vocab_size="
                     f"{config.vocab_size}; set --config.vocab_size={tok.vocab_size}")
  return tok


def set_num_classes(config, builder):
  """Sizes model.num_classes from the dataset's `label` (or `tags`) feature, or checks it."""
  if not {"classify", "tag"} & set(config.model.heads):
    return
  features = builder.info.features
  if "label" in features:
    num_classes = features["label"].num_classes
  elif "tags" in features:
    num_classes = features["tags"].feature.num_classes
  else:
    raise ValueError(f"corpus {config.corpus!r} has no label or tags feature to classify")
  if config.model.num_classes not in (0, num_classes):
    raise ValueError(f"model.num_classes={config.model.num_classes} but corpus {config.corpus!r} "
                     f"has {num_classes} classes; leave it 0 to take the corpus' count")
  config.model.num_classes = num_classes


def label_names(builder):
  """The class names of the dataset's `label` or `tags` feature, or None."""
  features = builder.info.features
  if "label" in features:
    return features["label"].names
  if "tags" in features:
    return features["tags"].feature.names
  return None


def eval_reference(builder, split, config):
  """(examples of the split in order, what the objective needs to read predictions: label names,
  or the QA decoding settings) for scoring and predictions files; None for language models."""
  if config.objective == "extractive_qa":
    return builder.as_data_source(split), config.qa
  names = label_names(builder)
  return None if names is None else (builder.as_data_source(split), names)


def text_of(example):
  """The running text of an example: its `text`, its `context` (QA; questions are short and
  repeat), or its `tokens` joined by spaces."""
  if "text" in example:
    return example["text"]
  if "context" in example:
    return example["context"]
  return " ".join(t.decode(errors="replace") if isinstance(t, bytes) else t
                  for t in example["tokens"])


def decode_example(example):
  """A TFDS example with its Text features (also inside sequences and nested dicts) as str."""
  out = {}
  for k, v in example.items():
    if isinstance(v, bytes):
      v = v.decode(errors="replace")
    elif isinstance(v, dict):
      v = decode_example(v)
    elif isinstance(v, (list, tuple, np.ndarray)) and len(v) and isinstance(v[0], bytes):
      v = [t.decode(errors="replace") for t in v]   # a sequence of Text
    out[k] = v
  return out


def _documents(builder, split, process_index, process_count):
  """(doc_index, example) pairs of this process's share of a split, as a random-access dataset.

  Text features are decoded to str; everything else is as TFDS stores it."""
  source = builder.as_data_source(split)
  docs = grain.MapDataset.source(source).map_with_index(lambda i, ex: (i, decode_example(ex)))
  return docs[process_index::process_count]


def _causal_lm_rows(docs, all_docs, config, tok, train):
  """<s> text </s> per document -> (inputs, targets) shifted by one -> packed rows."""
  def example(item):
    ids = [tokenizer_lib.BOS] + tok.encode(item[1]["text"]) + [tokenizer_lib.EOS]
    ids = np.asarray(ids, np.int32)
    return {"inputs": ids[:-1], "targets": ids[1:]}
  del all_docs, train
  return _pack(docs.map(example).to_iter_dataset(READ_OPTIONS), config.seq_len)


def _pack(dataset, seq_len):
  packed = grain.experimental.ConcatThenSplitIterDataset(
      dataset, length_struct={k: seq_len for k in PACKED_KEYS})
  return packed.map(lambda r: {"inputs": r["inputs"], "targets": r["targets"],
                               "segment_ids": r["inputs_segment_ids"],
                               "positions": r["inputs_positions"]})


def _masked_lm_rows(docs, all_docs, config, tok, train):
  """BERT ([CLS] A [SEP] B [SEP] with NSP labels) or RoBERTa-style packed documents, then masking.

  `docs` is the stream of (doc_index, text) to read, possibly shuffled and repeated for epochs;
  `all_docs` is one epoch of this process's documents in index order, for random access.
  Masking is `dynamic` (new masks each epoch, RoBERTa) or `static` (the same masks every epoch,
  BERT); evaluation always uses static masks so its figures are comparable between runs.
  """
  num_docs = len(all_docs)
  static = config.masking == "static" or not train
  def rng_for(epoch, doc_index, purpose):
    return np.random.default_rng([config.seed, 0 if static else epoch, doc_index, purpose])

  def mask(row, rng):
    row["inputs"], row["targets"] = bert.mask_tokens(
        row["inputs"], row["segment_ids"], rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
        special_ids=tok.special_ids, mask_prob=config.mask_prob)
    return row

  def sentences(text):
    return [ids for ids in (tok.encode(s) for s in bert.split_sentences(text)) if ids]

  if config.nsp:
    if num_docs < 2:
      raise ValueError(f"nsp=True needs at least 2 documents per process, got {num_docs}")
    def pairs(step, item):
      doc_index, text = item[0], item[1]["text"]
      epoch = step // num_docs
      rng = rng_for(epoch, doc_index, 0)
      def random_sentences(r):
        # Uniform over the other documents: a draw of our own slot maps to the excluded last slot.
        other = r.integers(num_docs - 1)
        if all_docs[other][0] == doc_index:
          other = num_docs - 1
        # Only a window from a random sentence on is needed: tokenizing whole documents for a few
        # sentences made NSP rows several times slower to build.
        texts = bert.split_sentences(all_docs[other][1]["text"])
        window, length = [], 0
        for text in texts[r.integers(len(texts)):]:
          if length >= config.seq_len:
            break
          if ids := tok.encode(text):
            window.append(ids)
            length += len(ids)
        return window
      instances = bert.create_nsp_instances(sentences(text), random_sentences,
                                            config.seq_len - 3, rng)
      rows = []
      for k, inst in enumerate(instances):
        row = bert.assemble_pair(inst["tokens_a"], inst["tokens_b"], tok.cls_id, tok.sep_id,
                                 config.seq_len)
        row["nsp_labels"] = np.int32(inst["is_next"])
        rows.append(mask(row, rng_for(epoch, doc_index, 1 + k)))
      return rows
    return _flatten(docs.map_with_index(pairs).to_iter_dataset(READ_OPTIONS))

  def document(item):
    ids = np.asarray([tok.cls_id] + tok.encode(item[1]["text"]) + [tok.sep_id], np.int32)
    return {"inputs": ids, "targets": ids}
  rows = _pack(docs.map(document).to_iter_dataset(READ_OPTIONS), config.seq_len)
  # Packed rows mix documents, so their masks are seeded by the row itself: by its content for
  # static masking (the same sequence always gets the same mask), by its place in the endless
  # stream for dynamic masking (never the same twice).
  def mask_row(step, row):
    key = zlib.crc32(row["inputs"].tobytes()) if static else step
    return mask(row, rng_for(0, key, 1))
  return rows.map_with_index(mask_row)


class _ListFlatten(grain.experimental.FlatMapTransform):
  """Lists of examples -> examples (grain keeps the position inside a list in its state)."""
  max_fan_out = 1 << 20

  def flat_map(self, element):
    return element


def _flatten(dataset):
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


def _classification_rows(docs, all_docs, config, tok, train):
  """One padded [CLS] text [SEP] row per example, with its integer label."""
  del all_docs, train
  def example(item):
    row = encode_single(tok, item[1]["text"], config.seq_len)
    row["labels"] = np.int32(item[1]["label"])
    return row
  return docs.map(example).to_iter_dataset(READ_OPTIONS)


def _template_ids(tok, part):
  """Token ids of a piece of template text, with [MASK] as the mask token."""
  ids = []
  for i, chunk in enumerate(part.split("[MASK]")):
    if i:
      ids.append(tok.mask_id)
    if chunk.strip():
      ids += tok.encode(chunk.strip())
  return ids


def encode_cloze(tok, text, template, seq_len):
  """[CLS] template-with-text [SEP]: the text is cut so the template always fits whole.
  Returns the row plus `mask_positions`, the index of the template's [MASK]."""
  prefix, suffix = template.split("{text}")
  before, after = _template_ids(tok, prefix), _template_ids(tok, suffix)
  room = seq_len - 2 - len(before) - len(after)
  if room < 1:
    raise ValueError(f"cloze.template={template!r} leaves no room for the text in seq_len="
                     f"{seq_len}; shorten the template or raise seq_len")
  text_ids = tok.encode(text)[:room]
  row = padded_row([tok.cls_id] + before + text_ids + after + [tok.sep_id], seq_len)
  # Located in the template, not searched for: the text itself may contain the mask token.
  mask = (1 + before.index(tok.mask_id) if tok.mask_id in before
          else 1 + len(before) + len(text_ids) + after.index(tok.mask_id))
  row["mask_positions"] = np.int32(mask)
  return row


def verbalizer_ids(config, tok, names):
  """The token id of each class's label word (config.cloze.verbalizer), in class order."""
  verbalizer = dict(config.cloze.verbalizer)
  if set(verbalizer) != set(names):
    raise ValueError(f"cloze.verbalizer has labels {sorted(verbalizer)} but corpus "
                     f"{config.corpus!r} has {sorted(names)}; give one word per label")
  ids = []
  for name in names:
    pieces = tok.encode(verbalizer[name])
    if len(pieces) != 1:
      raise ValueError(f"cloze.verbalizer: {name}={verbalizer[name]!r} is {len(pieces)} pieces "
                       f"in this vocabulary ({tok.path}); choose a word that is one piece")
    ids.append(pieces[0])
  return np.asarray(ids, np.int32)


def encode_words(tok, words, tags, seq_len):
  """[CLS] pieces [SEP] for a pre-split sentence; each word's tag sits on its first piece (the
  others get -1, ignored). A word with no pieces becomes [UNK] so words and tags stay aligned;
  words past seq_len are cut (evaluation then predicts 'O' for them)."""
  pieces, labels = [tok.cls_id], [-1]
  for word, tag in zip(words, tags):
    ids = tok.encode(word) or [tokenizer_lib.UNK]
    if len(pieces) + len(ids) > seq_len - 1:
      break
    pieces += ids
    labels += [int(tag)] + [-1] * (len(ids) - 1)
  pieces.append(tok.sep_id)
  labels.append(-1)
  row = padded_row(pieces, seq_len)
  row["labels"] = np.full(seq_len, -1, np.int32)
  row["labels"][:len(pieces)] = labels
  return row


def _tagging_rows(docs, all_docs, config, tok, train):
  """One padded row per sentence, labels on first sub-tokens."""
  del all_docs, train
  def example(item):
    return encode_words(tok, list(item[1]["tokens"]), list(item[1]["tags"]), config.seq_len)
  return docs.map(example).to_iter_dataset(READ_OPTIONS)


def _cloze_rows(docs, all_docs, config, tok, train):
  """One padded template row per example, with its [MASK] position, label and label words."""
  del all_docs, train
  template = config.cloze.template
  if template.count("{text}") != 1 or template.count("[MASK]") != 1:
    raise ValueError(f"cloze.template={template!r}: expected one '{{text}}' and one '[MASK]'")
  words = verbalizer_ids(config, tok, label_names(corpus_builder(config)))
  def example(item):
    row = encode_cloze(tok, item[1]["text"], template, config.seq_len)
    row["labels"] = np.int32(item[1]["label"])
    row["verbalizer_ids"] = words
    return row
  return docs.map(example).to_iter_dataset(READ_OPTIONS)


def _qa_rows(docs, all_docs, config, tok, train):
  """One row per context window (see data/qa.py); a long context gives several rows."""
  del all_docs, train
  def windows(item):
    return qa.encode_qa(tok, item[1], item[0], config.seq_len, config.qa.max_query_len,
                        config.qa.doc_stride)
  return _flatten(docs.map(windows).to_iter_dataset(READ_OPTIONS))


ROW_BUILDERS = {"causal_lm": _causal_lm_rows, "masked_lm": _masked_lm_rows,
                "classification": _classification_rows, "tagging": _tagging_rows,
                "extractive_qa": _qa_rows, "cloze": _cloze_rows}
# Keys whose padding value is -1 ("nothing here"); all others pad with 0.
PAD_WITH_MINUS_ONE = ("labels", "example_index", "word_index")


def local_batch_size(config):
  if config.batch_size % jax.process_count():
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the "
                     f"{jax.process_count()} processes")
  return config.batch_size // jax.process_count()


def train_iterator(config, tok, builder):
  """An endless, checkpointable iterator of this process's numpy batches."""
  docs = _documents(builder, "train", jax.process_index(), jax.process_count())
  stream = docs.shuffle(seed=config.seed).repeat(None)   # a fresh order each epoch
  rows = ROW_BUILDERS[config.objective](stream, docs, config, tok, train=True)
  batches = rows.batch(local_batch_size(config), drop_remainder=True)
  return iter(grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=2))


def eval_batches(config, tok, builder, split="validation"):
  """This process's validation batches: every row once, the last batch padded with empty rows.

  Every process gets the same number of batches (the jitted eval step is collective).
  """
  docs = _documents(builder, split, 0, 1)
  rows = list(ROW_BUILDERS[config.objective](docs, docs, config, tok, train=False))
  batch = config.batch_size
  num_batches = -(-len(rows) // batch)
  if config.eval_batches > 0:
    num_batches = min(num_batches, config.eval_batches)
  # Padding rows: no tokens, and label -1, which every objective leaves out of its sums.
  empty = {k: np.full_like(v, -1) if k.endswith(PAD_WITH_MINUS_ONE) else np.zeros_like(v)
           for k, v in rows[0].items()}
  rows = rows + [empty] * (num_batches * batch - len(rows))
  # Process p holds block p of every global batch, so the global arrays keep the split's order.
  local = local_batch_size(config)
  out = []
  for b in range(num_batches):
    start = b * batch + jax.process_index() * local
    out.append({k: np.stack([r[k] for r in rows[start:start + local]]) for k in empty})
  return out
