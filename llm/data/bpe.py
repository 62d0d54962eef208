"""A byte-level BPE vocabulary read from a GGUF file's metadata, behind the same interface as
`tokenizer.Tokenizer` (run through Hugging Face `tokenizers`).

The vocabulary and merges are `tokenizer.ggml.tokens` / `.merges`; control tokens (type 3, e.g.
ChatML's <|im_start|>) are special tokens that text never splits. SmolLM2 pre-splits digits one
by one before GPT-2's byte-level rules (its pre-tokenizer `smollm`).
"""
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

CONTROL = 3   # GGUF token type of control tokens


class TokenizersMethods:
  """encode / encode_batch / decode of a `tokenizers.Tokenizer` held as `self.tok`, bare pieces
  (the pipelines add <s> and </s> themselves)."""

  def encode(self, text):
    return self.tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts):
    """[ids] per text, in one call (much faster than a loop for many short texts)."""
    return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids):
    return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


class BpeTokenizer(TokenizersMethods):
  """A loaded byte-level BPE vocabulary plus the ids the pipelines need."""

  def __init__(self, gguf_file):
    f = gguf_file
    if f.field("tokenizer.ggml.model") != "gpt2":
      raise ValueError(f"{f.path}: tokenizer.ggml.model={f.field('tokenizer.ggml.model')!r}; "
                       f"only byte-level BPE ('gpt2') vocabularies are supported")
    self.path = str(f.path)
    pieces = list(f.field("tokenizer.ggml.tokens"))
    types = list(f.field("tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ", 1)) for m in f.field("tokenizer.ggml.merges")]
    self.tok = tokenizers.Tokenizer(models.BPE({p: i for i, p in enumerate(pieces)}, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if f.field("tokenizer.ggml.pre") == "smollm":
      byte_level = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                            byte_level])
    self.tok.pre_tokenizer = byte_level
    self.tok.decoder = decoders.ByteLevel()
    control = [p for p, t in zip(pieces, types) if t == CONTROL]
    self.tok.add_special_tokens([tokenizers.AddedToken(p, special=True) for p in control])
    self.vocab_size = len(pieces)
    self.bos_id = int(f.field("tokenizer.ggml.bos_token_id"))
    self.eos_id = int(f.field("tokenizer.ggml.eos_token_id"))
    self.add_bos = bool(f.field("tokenizer.ggml.add_bos_token", False))
    self.special_ids = tuple(pieces.index(p) for p in control)
    self.chat_template = f.field("tokenizer.chat_template")
