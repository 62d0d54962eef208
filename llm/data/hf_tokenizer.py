"""A Hugging Face folder's tokenizer.json (a GPT-2, Llama or T5 folder) behind the interface of
`tokenizer.Tokenizer`, run through the `tokenizers` library.

`encode` returns bare pieces: the pipelines add <s> and </s> themselves. Which ids those are
comes from the folder's config.json (an encoder-decoder's decoder starts from its
`decoder_start_token_id`, else its pad id, as T5's does); whether texts start with <s> from the
tokenizer's own template (a Llama's adds it, GPT-2's and T5's do not).
"""
import json
import pathlib

import tokenizers

from llm.data.bpe import TokenizersMethods


class FolderTokenizer(TokenizersMethods):
  """A loaded tokenizer.json plus the ids the pipelines need."""

  def __init__(self, folder):
    folder = pathlib.Path(folder).expanduser()
    path = folder / "tokenizer.json"
    if not path.is_file():
      raise FileNotFoundError(f"{path} does not exist; a Hugging Face folder's tokenizer is read "
                              f"from its tokenizer.json (save it with the tokenizer's "
                              f"save_pretrained)")
    self.path = str(path)
    try:
      self.tok = tokenizers.Tokenizer.from_file(self.path)
    except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception type
      raise ValueError(f"{path} is not a tokenizers file ({str(e)[:160]})") from None
    hf = json.loads((folder / "config.json").read_text())
    eos = hf.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    # An encoder-decoder's decoder starts from decoder_start_token_id, T5's pad id when unset.
    start = (hf.get("decoder_start_token_id", hf.get("pad_token_id"))
             if hf.get("is_encoder_decoder") else None)
    bos = start if start is not None else hf.get("bos_token_id")
    bos = eos if bos is None else bos   # GPT-2's way: one <|endoftext|> for both
    if eos is None:
      raise ValueError(f"{folder / 'config.json'} names no eos_token_id; the pipelines end texts "
                       f"with it")
    self.bos_id, self.eos_id = int(bos), int(eos)
    # The template's own choice, before it is switched off: does a text start with <s>?
    self.add_bos = (not hf.get("is_encoder_decoder") and
                    self.tok.encode("a", add_special_tokens=True).ids[:1] == [self.bos_id])
    # Every batch here pads with id 0, which no loss counts: a text token there (GPT-2's "!")
    # would silently never be learned or scored.
    zero = self.tok.id_to_token(0)
    self.special_ids = tuple(sorted(i for i, token in self.tok.get_added_tokens_decoder().items()
                                    if token.special))
    if 0 not in self.special_ids and self.tok.encode(zero, add_special_tokens=False).ids == [0]:
      raise ValueError(f"{path}: id 0 is the text token {zero!r}, but id 0 pads every batch "
                       f"here (and no loss counts it); only tokenizers whose id 0 is a special "
                       f"token (<pad>, <unk>, <|endoftext|>, ...) can be used")
    self.tok.no_truncation()
    self.tok.no_padding()
    self.tok.post_processor = None
    self.vocab_size = self.tok.get_vocab_size()
    self.chat_template = self._chat_template(folder)

  @staticmethod
  def _chat_template(folder):
    settings = folder / "tokenizer_config.json"
    template = json.loads(settings.read_text()).get("chat_template") if settings.is_file() \
        else None
    if template is None and (folder / "chat_template.jinja").is_file():
      template = (folder / "chat_template.jinja").read_text()
    return template
