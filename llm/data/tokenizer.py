"""SentencePiece model trained by the project on a corpus' train split, cached and reused.

Fixed ids: 0 = <pad>, 1 = <unk>, 2 = <s>, 3 = </s>, then [CLS], [SEP], [MASK] for BERT-style inputs.
"""
import os
import pathlib
import re
import tempfile

import sentencepiece as spm

from llm import runlog

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_PIECES = ("[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
  """A loaded SentencePiece model plus the ids the pipelines need."""

  def __init__(self, model_path):
    self.path = str(model_path)
    self.sp = spm.SentencePieceProcessor(model_file=self.path)
    self.vocab_size = self.sp.get_piece_size()
    self.cls_id, self.sep_id, self.mask_id = (self.sp.piece_to_id(p) for p in SPECIAL_PIECES)
    self.special_ids = (PAD, UNK, BOS, EOS, self.cls_id, self.sep_id, self.mask_id)
    self.bos_id, self.eos_id, self.add_bos = BOS, EOS, True   # what texts start and end with
    self.extra_ids = 0   # ids the model has past the pieces (set by load_tokenizer)

  def encode(self, text):
    return self.sp.encode(text)

  def encode_batch(self, texts):
    """[ids] per text, in one call (much faster than a loop for many short texts)."""
    return self.sp.encode(list(texts))

  def decode(self, ids):
    """Text of `ids`; ids past the pieces (T5's sentinels, config.extra_ids of them at the end of
    the model's vocabulary, the last one first) as <extra_id_K>."""
    text, run = [], []
    for i in (int(i) for i in ids if int(i) != PAD):
      if i < self.vocab_size:
        run.append(i)
        continue
      text += [self.sp.decode(run), f"<extra_id_{self.vocab_size + self.extra_ids - 1 - i}>"]
      run = []
    return "".join(text + [self.sp.decode(run)])


# SentencePiece's max_sentence_length (its default): longer lines are left out of training.
MAX_LINE_BYTES = 4192


def train(texts, vocab_size, model_type, path):
  """Trains a SentencePiece model on an iterable of strings and writes it atomically to `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # Paragraphs, not whole documents: SentencePiece skips "sentences" over max_sentence_length.
  lines = (p for text in texts for p in text.splitlines() if p.strip())
  with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
    prefix = os.path.join(tmp, "spm")
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=lines, model_prefix=prefix, vocab_size=vocab_size,
          model_type=model_type, character_coverage=1.0, pad_id=PAD, unk_id=UNK, bos_id=BOS,
          eos_id=EOS, user_defined_symbols=list(SPECIAL_PIECES), num_threads=os.cpu_count(),
          max_sentence_length=MAX_LINE_BYTES, minloglevel=2)
    except RuntimeError as e:   # a vocabulary larger than the corpus supports, or too small
      small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
      why = (f"it must hold the corpus' {small.group(1)} characters and the special pieces"
             if small else str(e).split("] ")[-1].strip())
      if "sentences_.empty()" in str(e):   # every line skipped: none under its length limit
        why = (f"no line of the text is shorter than SentencePiece's limit of "
               f"{MAX_LINE_BYTES:,} bytes; the corpus needs line breaks")
      raise ValueError(f"training a {vocab_size}-piece SentencePiece model failed: {why} (set "
                       f"--config.vocab_size)") from e
    os.replace(prefix + ".model", path)
  return path


def _sentencepiece(config, builder):
  """config.tokenizer.path if set, else a SentencePiece model trained once on the corpus' train
  split and cached (your files' one is named after their contents, as their prepared data is)."""
  from llm.data import corpora   # TFDS: only here, so that importing the ids costs nothing
  cfg = config.tokenizer
  if cfg.path:
    path = corpora.existing_file(cfg.path, "tokenizer.path")
  else:
    name = f"{corpora.cache_name(config, builder)}_{cfg.model_type}_{config.vocab_size}.model"
    path = corpora.data_dir(config) / "tokenizers" / name

    def train_once():
      with corpora.data_lock(config):
        if path.is_file():
          return
        runlog.log(f"training a {cfg.model_type} SentencePiece tokenizer ({config.vocab_size:,} "
                   f"pieces) on the train split (first use; saved to {path})")
        source = builder.as_data_source("train")
        texts = (corpora.as_text(corpora.text_of(source[i])) for i in range(len(source)))
        train(texts, config.vocab_size, cfg.model_type, path)
    corpora.on_first_process(train_once, "tokenizer")
  try:
    tok = Tokenizer(path)
  except (RuntimeError, OSError) as e:   # not a SentencePiece model: SentencePiece's own words
    raise ValueError(f"tokenizer {path} is not a SentencePiece model ({str(e).strip()[:160]}); "
                     f"name a .model file SentencePiece wrote, or leave tokenizer.path empty "
                     f"to train one") from None
  tok.extra_ids = config.get("extra_ids", 0)
  return tok


def _wordpiece(config, builder):
  """A Hugging Face BERT vocabulary from the folder tokenizer.path."""
  del builder
  from llm.data.wordpiece import WordPieceTokenizer
  return WordPieceTokenizer(config.tokenizer.path)


def _gguf(config, builder):
  """The byte-level BPE vocabulary in a GGUF file's metadata (tokenizer.path, or 'smollm2')."""
  del builder
  from llm import gguf_files
  from llm.data.bpe import BpeTokenizer
  return BpeTokenizer(gguf_files.read(config.tokenizer.path))


def _huggingface(config, builder):
  """The tokenizer.json of the Hugging Face folder tokenizer.path (GPT-2, Llama, T5)."""
  del builder
  from llm.data.hf_tokenizer import FolderTokenizer
  return FolderTokenizer(config.tokenizer.path)


# tokenizer.kind -> its loader (config, corpus builder) -> tokenizer.
LOADERS = {"sentencepiece": _sentencepiece, "wordpiece": _wordpiece, "gguf": _gguf,
           "huggingface": _huggingface}


def load_tokenizer(config, builder):
  """The tokenizer config.tokenizer names, checked against config.vocab_size."""
  kind = config.tokenizer.kind
  if kind not in LOADERS:
    raise ValueError(f"tokenizer.kind={kind!r}: expected one of {list(LOADERS)}")
  tok = LOADERS[kind](config, builder)
  # A model may have rows past its tokenizer's pieces (model.unused_vocab), masked in its output.
  pieces = config.vocab_size - config.model.get("unused_vocab", 0)
  if tok.vocab_size != pieces:
    raise ValueError(f"tokenizer {tok.path} has {tok.vocab_size} pieces but vocab_size="
                     f"{config.vocab_size}; set --config.vocab_size={tok.vocab_size}")
  return tok
