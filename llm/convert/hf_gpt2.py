"""Hugging Face GPT-2 (GPT2LMHeadModel) <-> our GPT-2-preset decoder: its config and name map.

GPT-2's Conv1D layers store weights as (in, out), as our kernels are, so only the attention
needs reshaping: query, key and value are one `c_attn` of 3 x embed columns (heads in order
within each third), which the map sees as three virtual tensors `attn.q/k/v`. GPT2LMHeadModel
files prefix the body's tensors with 'transformer.'; a GPT2Model file does not.
"""
import numpy as np

from llm.convert import Rule, export_params, hf_files, import_tensors
from llm.models import presets

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
KIND = "a Hugging Face GPT-2 folder"
# GPT2Config's defaults: transformers leaves keys out of config.json when they have these values.
DEFAULTS = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                n_inner=None, activation_function="gelu_new", resid_pdrop=0.1, attn_pdrop=0.1,
                layer_norm_epsilon=1e-5, tie_word_embeddings=True)
# What our model computes; a file with other values is refused rather than run differently.
COMPUTES = dict(activation_function="gelu_new", scale_attn_weights=True,
                scale_attn_by_inverse_layer_idx=False, add_cross_attention=False)
# The GPT-2 preset as a ModelConfig must have these values to be written as GPT-2.
EXPORTABLE = dict(family="decoder", norm="pre", norm_kind="layernorm", position="learned",
                  mlp="gelu_tanh", use_bias=True, embed_norm=False, embed_scale=False,
                  type_vocab_size=0, prompt_length=0)


def read_config(folder):
  """config.json of `folder` with the defaults filled in, after checking our model computes it."""
  folder = hf_files.require_files(folder, KIND)
  path = folder / "config.json"
  hf = {**DEFAULTS, **hf_files.read_config(folder)}
  hf_files.check_values(hf, {"model_type": MODEL_TYPE, **COMPUTES}, path, "GPT-2")
  return hf


def model_overrides(folder):
  """The config values (`vocab_size` and `model.*`) that make our decoder this GPT-2."""
  hf = read_config(folder)
  return {"vocab_size": hf["vocab_size"], "model": dict(
      presets.GPT2, num_layers=hf["n_layer"], embed_dim=hf["n_embd"], num_heads=hf["n_head"],
      num_kv_heads=0, head_dim=0, mlp_dim=hf["n_inner"] or 4 * hf["n_embd"],
      max_len=hf["n_positions"], layer_norm_eps=hf["layer_norm_epsilon"],
      dropout_rate=hf["resid_pdrop"], attention_dropout_rate=hf["attn_pdrop"],
      tie_embeddings=hf["tie_word_embeddings"])}


def _dense(ours, theirs):   # Conv1D: (in, out), as ours
  return [Rule(f"{ours}/kernel", f"{theirs}.weight"), Rule(f"{ours}/bias", f"{theirs}.bias")]


def _norm(ours, theirs):
  return [Rule(f"{ours}/scale", f"{theirs}.weight"), Rule(f"{ours}/bias", f"{theirs}.bias")]


def rules(cfg):
  """The name map of a GPT-2 with ModelConfig `cfg`'s shapes (names without 'transformer.')."""
  heads, embed = cfg.num_heads, cfg.embed_dim
  out = [Rule("token_embed/embedding", "wte.weight"),
         Rule("decoder/position_embed/embedding", "wpe.weight"),
         *_norm("decoder/final_norm", "ln_f")]
  if not cfg.tie_embeddings:
    out.append(Rule("lm_head/out/kernel", "lm_head.weight", lambda w: w.T, lambda k: k.T))
  for i in range(cfg.num_layers):
    ours, theirs = f"decoder/layer_{i}", f"h.{i}"
    for name, part in (("query", "q"), ("key", "k"), ("value", "v")):
      out += [Rule(f"{ours}/attention/{name}/kernel", f"{theirs}.attn.{part}.weight",
                   lambda w: w.reshape(embed, heads, -1), lambda k: k.reshape(embed, -1)),
              Rule(f"{ours}/attention/{name}/bias", f"{theirs}.attn.{part}.bias",
                   lambda b: b.reshape(heads, -1), lambda b: b.reshape(-1))]
    out += [Rule(f"{ours}/attention/out/kernel", f"{theirs}.attn.c_proj.weight",
                 lambda w: w.reshape(heads, -1, embed), lambda k: k.reshape(-1, embed)),
            Rule(f"{ours}/attention/out/bias", f"{theirs}.attn.c_proj.bias"),
            *_norm(f"{ours}/attention_norm", f"{theirs}.ln_1"),
            *_norm(f"{ours}/mlp_norm", f"{theirs}.ln_2"),
            *_dense(f"{ours}/mlp/wi", f"{theirs}.mlp.c_fc"),
            *_dense(f"{ours}/mlp/wo", f"{theirs}.mlp.c_proj")]
  return out


def _split_qkv(tensors):
  """Each fused `attn.c_attn` as its three thirds `attn.q`, `attn.k`, `attn.v`."""
  out = {}
  for name, value in tensors.items():
    name = name.removeprefix("transformer.")
    if ".attn.c_attn." in name:
      for part, third in zip("qkv", np.split(value, 3, axis=-1)):
        out[name.replace(".c_attn.", f".{part}.")] = third
    else:
      out[name] = value
  return out


def _fuse_qkv(tensors):
  """The inverse of _split_qkv, with the body's names prefixed for GPT2LMHeadModel."""
  out = {}
  for name, value in tensors.items():
    if ".attn.q." in name:
      parts = [tensors[name.replace(".q.", f".{p}.")] for p in "qkv"]
      out["transformer." + name.replace(".q.", ".c_attn.")] = np.concatenate(parts, axis=-1)
    elif ".attn.k." not in name and ".attn.v." not in name:
      out[name if name.startswith("lm_head.") else "transformer." + name] = value
  return out


def load_params(folder, cfg):
  """model.safetensors as our nested float32 params (unscanned layout) for ModelConfig `cfg`."""
  folder = hf_files.require_files(folder, KIND)
  tensors = _split_qkv(hf_files.read_tensors(folder))
  return import_tensors(tensors, rules(cfg), folder / "model.safetensors")


def hf_config(cfg, special_ids):
  """config.json of ModelConfig `cfg`; `special_ids` {'bos_token_id': i, ...} of its tokenizer."""
  return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE,
          "vocab_size": cfg.vocab_size, "n_positions": cfg.max_len, "n_embd": cfg.embed_dim,
          "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.mlp_dim,
          "activation_function": "gelu_new", "resid_pdrop": cfg.dropout_rate,
          "embd_pdrop": cfg.dropout_rate, "attn_pdrop": cfg.attention_dropout_rate,
          "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
          "scale_attn_weights": True, "tie_word_embeddings": cfg.tie_embeddings,
          "dtype": "float32", **special_ids}


def check_exportable(cfg):
  """Raises ValueError unless the ModelConfig `cfg` is a model GPT-2 can hold."""
  for key, value in EXPORTABLE.items():
    if getattr(cfg, key) != value:
      raise ValueError(f"model.{key}={getattr(cfg, key)!r}: HF GPT-2 needs {key}={value!r}")
  if cfg.kv_heads != cfg.num_heads or cfg.num_heads * cfg.qkv_dim != cfg.embed_dim:
    raise ValueError(f"HF GPT-2 needs as many key/value heads as heads and head_dim x heads = "
                     f"embed_dim (got num_kv_heads={cfg.num_kv_heads}, head_dim={cfg.head_dim} "
                     f"for embed_dim={cfg.embed_dim}, num_heads={cfg.num_heads})")


def export(params, cfg, out_dir, special_ids):
  """Writes params of a GPT-2-preset decoder as a GPT2LMHeadModel folder."""
  check_exportable(cfg)
  tensors = _fuse_qkv(export_params(params, rules(cfg)))
  return hf_files.write(out_dir, tensors, hf_config(cfg, special_ids))
