"""A SentencePiece model as a Hugging Face fast tokenizer (tokenizer.json + tokenizer_config.json),
built from the model's own pieces, scores and normalization rules with the `tokenizers` library,
so that an exported folder tokenizes text as our pipeline does (`[CLS] pieces [SEP]` for BERT,
`<s> pieces` for decoders, `pieces </s>` for an encoder-decoder's source).

Unigram models keep the [CLS]/[SEP]/[MASK] pieces inside the model (SentencePiece matches them
like any piece); BPE models get merges derived from the vocabulary (a piece merges the two pieces
it splits into, the better-ranked merged piece first). One difference stays: like every Hugging
Face BERT tokenizer, the folder splits a literal "[MASK]" in the text off on its own, where
SentencePiece keeps the space before it as a piece of its own."""
import json
import pathlib

import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors

# SentencePiece piece types (sentencepiece_model.proto).
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4
_UNIGRAM = 1


def _bpe_merges(vocab, control):
  """(left, right) merges in the order BPE applies them: by the merged piece's rank, then by the
  ranks of its halves; none makes a `control` piece."""
  merges = []
  for piece, rank in vocab.items():
    if piece in control:
      continue
    for cut in range(1, len(piece)):
      left, right = piece[:cut], piece[cut:]
      if left in vocab and right in vocab:
        merges.append((rank, vocab[left], vocab[right], left, right))
  return [(left, right) for *_, left, right in sorted(merges)]


def fast_tokenizer(model_path):
  """The tokenizers.Tokenizer that encodes text as the SentencePiece model at `model_path`."""
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(pathlib.Path(model_path).read_bytes())
  # Control pieces (<s>, </s>, <pad>) are never read from text: out of the Viterbi's reach.
  pieces = [(p.piece, -1e9 if p.type == _CONTROL else p.score) for p in proto.pieces]
  unk = next(i for i, p in enumerate(proto.pieces) if p.type == _UNKNOWN)
  if proto.trainer_spec.model_type == _UNIGRAM:
    tok = tokenizers.Tokenizer(models.Unigram(pieces, unk_id=unk, byte_fallback=False))
    atomic = []   # SentencePiece's Viterbi picks them whole, as the Unigram model does
  else:
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    control = {p.piece for p in proto.pieces if p.type == _CONTROL}
    tok = tokenizers.Tokenizer(models.BPE(vocab, _bpe_merges(vocab, control),
                                          unk_token=pieces[unk][0], fuse_unk=True,
                                          byte_fallback=False))
    atomic = [p.piece for p in proto.pieces if p.type == _USER_DEFINED]
  steps = []
  if proto.normalizer_spec.precompiled_charsmap:   # nmt_nfkc and friends, as compiled
    steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
  if proto.normalizer_spec.remove_extra_whitespaces:
    steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
  tok.normalizer = normalizers.Sequence(steps)
  tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                               split=False)
  tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in atomic])
  return tok


# What our pipelines put around a text, by model family: BERT's [CLS] A [SEP] B [SEP], a decoder's
# <s> A (its prompts), an encoder-decoder's source A </s>.
TEMPLATES = {"encoder": ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]"),
             "decoder": ("<s> $A", "<s> $A $B"),
             "encoder_decoder": ("$A </s>", "$A $B </s>")}


def export(model_path, out_dir, cfg):
  """Writes tokenizer.json (with the template of ModelConfig `cfg`'s family; in BERT pairs B's
  token type is 1 where the model has token types, as in our pair inputs) and
  tokenizer_config.json into `out_dir`; returns their names."""
  tok = fast_tokenizer(model_path)
  single, pair = TEMPLATES[cfg.family]
  if cfg.type_vocab_size > 1:
    pair = "[CLS] $A [SEP] $B:1 [SEP]:1"
  specials = sorted({t.split(":")[0] for t in (single + " " + pair).split() if t[0] != "$"})
  tok.post_processor = processors.TemplateProcessing(
      single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in specials])
  out_dir = pathlib.Path(out_dir)
  tok.save(str(out_dir / "tokenizer.json"))
  settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_len,
              "pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
  if cfg.family == "encoder":
    settings.update(cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
  (out_dir / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
  return ["tokenizer.json", "tokenizer_config.json"]
