"""A Hugging Face BERT WordPiece vocabulary behind the same interface as `tokenizer.Tokenizer`.

Loaded from a model folder's tokenizer.json (or vocab.txt). `encode` returns bare word pieces:
callers add [CLS]/[SEP] themselves, as they do with our SentencePiece tokenizer.
"""
import json
import pathlib

import tokenizers

SPECIAL_PIECES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class WordPieceTokenizer:
  """A loaded WordPiece vocabulary plus the ids the pipelines need."""

  def __init__(self, model_dir):
    """`model_dir`: a Hugging Face model folder, or its tokenizer.json or vocab.txt itself."""
    model_dir = pathlib.Path(model_dir).expanduser()
    candidates = [model_dir] if model_dir.is_file() else [model_dir / "tokenizer.json",
                                                          model_dir / "vocab.txt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
      raise FileNotFoundError(f"{model_dir} has neither tokenizer.json nor vocab.txt")
    self.path = str(path)
    if path.suffix == ".json":
      self.tok = tokenizers.Tokenizer.from_file(self.path)
    else:   # a bare vocabulary: BERT's normalisation, lowercased unless the folder says otherwise
      settings = path.parent / "tokenizer_config.json"
      settings = json.loads(settings.read_text()) if settings.is_file() else {}
      self.tok = tokenizers.BertWordPieceTokenizer(
          self.path, lowercase=settings.get("do_lower_case", True))
    # tokenizer.json files ship with truncation, padding and a [CLS]/[SEP] template switched on;
    # the pipelines do all three themselves.
    self.tok.no_truncation()
    self.tok.no_padding()
    self.tok.post_processor = None
    ids = {piece: self.tok.token_to_id(piece) for piece in SPECIAL_PIECES}
    if missing := [piece for piece, i in ids.items() if i is None]:
      raise ValueError(f"{self.path} has no {missing} tokens; expected a BERT WordPiece vocabulary")
    if ids["[PAD]"] != 0:   # batches are padded with id 0 everywhere
      raise ValueError(f"{self.path} has [PAD] = {ids['[PAD]']}; expected id 0")
    self.vocab_size = self.tok.get_vocab_size()
    self.cls_id, self.sep_id, self.mask_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
    self.special_ids = tuple(ids.values())
    self.bos_id, self.eos_id, self.add_bos = self.cls_id, self.sep_id, True

  def encode(self, text):
    return self.tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts):
    """[ids] per text, in one call (much faster than a loop for many short texts)."""
    return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

  def encode_with_offsets(self, text):
    """(ids, [(start, end)]): each piece's character span in `text`."""
    encoding = self.tok.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets

  def decode(self, ids):
    return self.tok.decode([int(i) for i in ids if int(i) != 0], skip_special_tokens=False)
