"""Llama-architecture GGUF files (llama.cpp's format; read by gguf_files.py) -> our decoder: the
config values and the tensors under our names. llama.cpp's converter reorders the rows of the
query and key projections for its interleaved RoPE; we rotate the two halves of each head (as
Hugging Face does), so those rows are put back. GGUF stores Dense weights as (out, in).
"""
from llm.convert import Rule, import_tensors
from llm.models import presets


def model_overrides(gguf_file):
  """The config values (`vocab_size` and `model.*`) that make our decoder this Llama."""
  f = gguf_file
  heads = int(f.llama("attention.head_count"))
  embed = int(f.llama("embedding_length"))
  return {"vocab_size": len(f.field("tokenizer.ggml.tokens")), "model": dict(
      presets.LLAMA, num_layers=int(f.llama("block_count")), embed_dim=embed, num_heads=heads,
      num_kv_heads=int(f.llama("attention.head_count_kv", heads)),
      head_dim=int(f.llama("rope.dimension_count", embed // heads)),
      mlp_dim=int(f.llama("feed_forward_length")), max_len=int(f.llama("context_length")),
      rope_base=float(f.llama("rope.freq_base", 10000.0)),
      layer_norm_eps=float(f.llama("attention.layer_norm_rms_epsilon")),
      tie_embeddings="output.weight" not in f.tensors)}


def unpermute(w, heads):
  """Undo llama.cpp's reordering of q/k rows: within each head, rows (0, half, 1, half+1, ...)
  back to (0, 1, ..., half - 1, half, ...), the layout that rotates the two halves."""
  return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def rules(cfg):
  """The name map of a Llama GGUF with ModelConfig `cfg`'s shapes (import only)."""
  heads, kv_heads, head_dim, embed = cfg.num_heads, cfg.kv_heads, cfg.qkv_dim, cfg.embed_dim
  out = [Rule("token_embed/embedding", "token_embd.weight"),
         Rule("decoder/final_norm/scale", "output_norm.weight"),
         Rule("lm_head/out/kernel", "output.weight", lambda w: w.T, optional=True)]
  for i in range(cfg.num_layers):
    ours, theirs = f"decoder/layer_{i}", f"blk.{i}"
    out += [
        Rule(f"{ours}/attention_norm/scale", f"{theirs}.attn_norm.weight"),
        Rule(f"{ours}/attention/query/kernel", f"{theirs}.attn_q.weight",
             lambda w: unpermute(w, heads).T.reshape(embed, heads, head_dim)),
        Rule(f"{ours}/attention/key/kernel", f"{theirs}.attn_k.weight",
             lambda w: unpermute(w, kv_heads).T.reshape(embed, kv_heads, head_dim)),
        Rule(f"{ours}/attention/value/kernel", f"{theirs}.attn_v.weight",
             lambda w: w.T.reshape(embed, kv_heads, head_dim)),
        Rule(f"{ours}/attention/out/kernel", f"{theirs}.attn_output.weight",
             lambda w: w.T.reshape(heads, head_dim, embed)),
        Rule(f"{ours}/mlp_norm/scale", f"{theirs}.ffn_norm.weight"),
        Rule(f"{ours}/mlp/wi_gate/kernel", f"{theirs}.ffn_gate.weight", lambda w: w.T),
        Rule(f"{ours}/mlp/wi/kernel", f"{theirs}.ffn_up.weight", lambda w: w.T),
        Rule(f"{ours}/mlp/wo/kernel", f"{theirs}.ffn_down.weight", lambda w: w.T)]
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
