"""A GGUF file's byte-level BPE tokenizer (data/bpe.py builds it from the file's metadata) as a
Hugging Face fast tokenizer: tokenizer.json, and tokenizer_config.json with its special tokens and
chat template, so that AutoTokenizer and apply_chat_template work on an exported Llama (a
fine-tuned SmolLM2) as our pipeline and llm.generate --chat do."""
import json
import pathlib

from tokenizers import processors

from llm.data.bpe import BpeTokenizer


def export(gguf_file, out_dir, max_len):
  """Writes tokenizer.json and tokenizer_config.json into `out_dir`; returns their names."""
  bpe = BpeTokenizer(gguf_file)
  tok = bpe.tok
  bos, eos = tok.id_to_token(bpe.bos_id), tok.id_to_token(bpe.eos_id)
  if bpe.add_bos:   # texts start with <s> in our pipeline: the tokenizer adds it too
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bpe.bos_id)])
  else:
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
  out_dir = pathlib.Path(out_dir)
  tok.save(str(out_dir / "tokenizer.json"))
  settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
              "bos_token": bos, "eos_token": eos, "pad_token": tok.id_to_token(0),
              "add_bos_token": bpe.add_bos, "clean_up_tokenization_spaces": False}
  if bpe.chat_template:
    settings["chat_template"] = bpe.chat_template
  (out_dir / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
  return ["tokenizer.json", "tokenizer_config.json"]
