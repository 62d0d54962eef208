"""Llama-architecture GGUF files (llama.cpp's format; read by gguf_files.py) <-> our decoder: the
config values and the tensors under our names, and a Llama-preset model written as such a file.
llama.cpp's converter reorders the rows of the query and key projections for its interleaved
RoPE; we rotate the two halves of each head (as Hugging Face does), so those rows are put back
on the way in and reordered again on the way out. GGUF stores Dense weights as (out, in).
"""
import os
import pathlib

import numpy as np

from llm.convert import Rule, export_params, import_tensors
from llm.models import presets


def model_overrides(gguf_file):
  """The config values (`vocab_size` and `model.*`) that make our decoder this Llama."""
  f = gguf_file
  heads = int(f.llama("attention.head_count"))
  embed = int(f.llama("embedding_length"))
  return {"vocab_size": len(f.field("tokenizer.ggml.tokens")), "model": dict(
      presets.LLAMA, num_layers=int(f.llama("block_count")), embed_dim=embed, num_heads=heads,
      num_kv_heads=int(f.llama("attention.head_count_kv", heads)),
      head_dim=int(f.llama("attention.key_length",
                           f.llama("rope.dimension_count", embed // heads))),
      mlp_dim=int(f.llama("feed_forward_length")), max_len=int(f.llama("context_length")),
      rope_base=float(f.llama("rope.freq_base", 10000.0)),
      layer_norm_eps=float(f.llama("attention.layer_norm_rms_epsilon")),
      tie_embeddings="output.weight" not in f.tensors)}


def unpermute(w, heads):
  """Undo llama.cpp's reordering of q/k rows: within each head, rows (0, half, 1, half+1, ...)
  back to (0, 1, ..., half - 1, half, ...), the layout that rotates the two halves."""
  return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def permute(w, heads):
  """llama.cpp's reordering of q/k rows, the inverse of `unpermute`."""
  return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def _t(ours, theirs):   # a Dense kernel: theirs (out, in), ours (in, out)
  return Rule(ours, theirs, lambda w: w.T, lambda k: k.T)


def rules(cfg):
  """The name map of a Llama GGUF with ModelConfig `cfg`'s shapes."""
  heads, kv_heads, head_dim, embed = cfg.num_heads, cfg.kv_heads, cfg.qkv_dim, cfg.embed_dim
  out = [Rule("token_embed/embedding", "token_embd.weight"),
         Rule("decoder/final_norm/scale", "output_norm.weight"),
         Rule("lm_head/out/kernel", "output.weight", lambda w: w.T, lambda k: k.T,
              optional=True)]
  for i in range(cfg.num_layers):
    ours, theirs = f"decoder/layer_{i}", f"blk.{i}"
    out += [
        Rule(f"{ours}/attention_norm/scale", f"{theirs}.attn_norm.weight"),
        Rule(f"{ours}/attention/query/kernel", f"{theirs}.attn_q.weight",
             lambda w: unpermute(w, heads).T.reshape(embed, heads, head_dim),
             lambda k: permute(k.reshape(embed, -1).T, heads)),
        Rule(f"{ours}/attention/key/kernel", f"{theirs}.attn_k.weight",
             lambda w: unpermute(w, kv_heads).T.reshape(embed, kv_heads, head_dim),
             lambda k: permute(k.reshape(embed, -1).T, kv_heads)),
        Rule(f"{ours}/attention/value/kernel", f"{theirs}.attn_v.weight",
             lambda w: w.T.reshape(embed, kv_heads, head_dim), lambda k: k.reshape(embed, -1).T),
        Rule(f"{ours}/attention/out/kernel", f"{theirs}.attn_output.weight",
             lambda w: w.T.reshape(heads, head_dim, embed), lambda k: k.reshape(-1, embed).T),
        Rule(f"{ours}/mlp_norm/scale", f"{theirs}.ffn_norm.weight"),
        _t(f"{ours}/mlp/wi_gate/kernel", f"{theirs}.ffn_gate.weight"),
        _t(f"{ours}/mlp/wi/kernel", f"{theirs}.ffn_up.weight"),
        _t(f"{ours}/mlp/wo/kernel", f"{theirs}.ffn_down.weight")]
  return out


class _Lazy(dict):
  """{tensor name: array} that dequantizes a tensor only when it is read."""

  def __init__(self, gguf_file):
    super().__init__()
    self.file = gguf_file

  def __contains__(self, name):
    return name in self.file.tensors

  def __getitem__(self, name):
    return self.file.array(name)


def load_params(gguf_file, cfg):
  """Our float32 decoder params (unscanned layout) from the GGUF file's tensors."""
  return import_tensors(_Lazy(gguf_file), rules(cfg), gguf_file.path)


# Tokenizer metadata a written file takes over from the GGUF file whose tokenizer the run used.
TOKENIZER_FIELDS = ("model", "pre", "tokens", "token_type", "merges", "bos_token_id",
                    "eos_token_id", "padding_token_id", "unknown_token_id", "add_bos_token",
                    "add_eos_token")
DTYPES = ("f32", "f16")


def write(path, params, cfg, tokenizer_file, dtype="f32"):
  """Writes a Llama-preset decoder's params (unscanned) as the GGUF file `path`, with the
  tokenizer (and chat template) of the GgufFile `tokenizer_file`; `dtype` f32, or f16 for the
  matrices (norm scales stay f32, as llama.cpp keeps them). Written beside and renamed, so a
  failed write leaves no partial file."""
  import gguf
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.partial")
  writer = gguf.GGUFWriter(tmp, "llama")
  writer.add_name(path.stem)
  writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16"
                       else gguf.LlamaFileType.ALL_F32)
  writer.add_vocab_size(cfg.vocab_size)
  writer.add_context_length(cfg.max_len)
  writer.add_embedding_length(cfg.embed_dim)
  writer.add_block_count(cfg.num_layers)
  writer.add_feed_forward_length(cfg.mlp_dim)
  writer.add_head_count(cfg.num_heads)
  writer.add_head_count_kv(cfg.kv_heads)
  writer.add_key_length(cfg.qkv_dim)   # llama.cpp's head size; else embed / heads
  writer.add_value_length(cfg.qkv_dim)
  writer.add_rope_dimension_count(cfg.qkv_dim)
  writer.add_rope_freq_base(cfg.rope_base)
  writer.add_layer_norm_rms_eps(cfg.layer_norm_eps)
  for key in TOKENIZER_FIELDS:
    value = tokenizer_file.field(f"tokenizer.ggml.{key}")
    if value is not None:
      writer.add_key_value(f"tokenizer.ggml.{key}", value,
                           tokenizer_file.reader.fields[f"tokenizer.ggml.{key}"].types[0],
                           sub_type=_sub_type(tokenizer_file, f"tokenizer.ggml.{key}"))
  if tokenizer_file.field("tokenizer.chat_template"):
    writer.add_chat_template(tokenizer_file.field("tokenizer.chat_template"))
  for name, array in export_params(params, rules(cfg)).items():
    matrix = dtype == "f16" and array.ndim > 1
    writer.add_tensor(name, array.astype(np.float16 if matrix else np.float32))
  try:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
  except BaseException:
    writer.close()
    tmp.unlink(missing_ok=True)
    raise
  os.replace(tmp, path)
  return path


def _sub_type(gguf_file, key):
  types = gguf_file.reader.fields[key].types
  return types[1] if len(types) > 1 else None
