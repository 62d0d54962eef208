"""Hugging Face T5 (T5ForConditionalGeneration) <-> our T5-preset encoder-decoder: its config and
name map.

Two differences are folded in at this boundary, so that both sides compute the same logits:
- T5 does not scale attention scores by 1/sqrt(head_dim) (its initialisation folds that into the
  query); our attention does. Our query kernels are theirs x sqrt(head_dim), in self- and
  cross-attention alike.
- A T5 whose config.json ties the output layer to the token table (T5 1.0, the default) scales
  the decoder's output by d_model^-0.5 before it; ours never scales, so such a file becomes our
  untied output layer, the table x d_model^-0.5. Exports are untied (T5.1.1's layout) and say
  `tie_word_embeddings: false`, which makes transformers neither tie nor scale them.
"""
import math

from llm.convert import Rule, export_params, hf_files, import_tensors
from llm.models import presets

MODEL_TYPE = "t5"
ARCHITECTURE = "T5ForConditionalGeneration"
KIND = "a Hugging Face T5 folder"
DEFAULTS = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                num_decoder_layers=None, num_heads=8, relative_attention_num_buckets=32,
                relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6,
                feed_forward_proj="relu", tie_word_embeddings=True)
# feed_forward_proj -> our MLP.
MLPS = {"relu": "relu", "gated-gelu": "geglu", "gated-silu": "swiglu"}
EXPORTABLE = dict(family="encoder_decoder", norm="pre", norm_kind="rmsnorm", position="relative",
                  use_bias=False, embed_norm=False, embed_scale=False, type_vocab_size=0,
                  prompt_length=0)


def read_config(folder):
  """config.json of `folder` with the defaults filled in, after checking our model computes it."""
  folder = hf_files.require_files(folder, KIND)
  path = folder / "config.json"
  hf = {**DEFAULTS, **hf_files.read_config(folder)}
  hf_files.check_values(hf, {"model_type": MODEL_TYPE}, path, "T5")
  if hf["feed_forward_proj"] not in MLPS:
    raise ValueError(f"{path} has feed_forward_proj={hf['feed_forward_proj']!r}; only T5 "
                     f"checkpoints with one of {sorted(MLPS)} map onto our model")
  return hf


def scales_output(hf):
  """Whether transformers scales this T5's decoder output by d_model^-0.5 (a tied T5 1.0)."""
  return hf.get("scale_decoder_outputs", hf["tie_word_embeddings"] is not False)


def model_overrides(folder):
  """The config values (`vocab_size` and `model.*`) that make our encoder-decoder this T5."""
  hf = read_config(folder)
  return {"vocab_size": hf["vocab_size"], "model": dict(
      presets.T5, num_layers=hf["num_layers"],
      num_decoder_layers=hf["num_decoder_layers"] or hf["num_layers"], embed_dim=hf["d_model"],
      num_heads=hf["num_heads"], num_kv_heads=0, head_dim=hf["d_kv"], mlp_dim=hf["d_ff"],
      mlp=MLPS[hf["feed_forward_proj"]], relative_buckets=hf["relative_attention_num_buckets"],
      relative_max_distance=hf["relative_attention_max_distance"],
      layer_norm_eps=hf["layer_norm_epsilon"], dropout_rate=hf["dropout_rate"],
      tie_embeddings=False)}


def _t(ours, theirs):   # a Dense kernel: theirs (out, in), ours (in, out)
  return Rule(ours, theirs, lambda w: w.T, lambda k: k.T)


def _attention(ours, theirs, cfg):
  heads, embed, scale = cfg.num_heads, cfg.embed_dim, math.sqrt(cfg.qkv_dim)
  split = lambda w: w.T.reshape(embed, heads, -1)   # (heads * d_kv, embed) -> ours
  fuse = lambda k: k.reshape(embed, -1).T
  return [Rule(f"{ours}/query/kernel", f"{theirs}.q.weight", lambda w: split(w) * scale,
               lambda k: fuse(k) / scale),
          Rule(f"{ours}/key/kernel", f"{theirs}.k.weight", split, fuse),
          Rule(f"{ours}/value/kernel", f"{theirs}.v.weight", split, fuse),
          Rule(f"{ours}/out/kernel", f"{theirs}.o.weight", lambda w: w.T.reshape(heads, -1, embed),
               lambda k: k.reshape(-1, embed).T)]


def _mlp(ours, theirs, cfg):
  if cfg.mlp == "relu":
    inputs = [_t(f"{ours}/wi/kernel", f"{theirs}.wi.weight")]
  else:
    inputs = [_t(f"{ours}/wi_gate/kernel", f"{theirs}.wi_0.weight"),
              _t(f"{ours}/wi/kernel", f"{theirs}.wi_1.weight")]
  return [*inputs, _t(f"{ours}/wo/kernel", f"{theirs}.wo.weight")]


def rules(cfg, output_scale=1.0):
  """The name map of a T5 with ModelConfig `cfg`'s shapes; `output_scale` multiplies the output
  layer on the way in (d_model^-0.5 for a T5 that scales its decoder output)."""
  out = [Rule("token_embed/embedding", "shared.weight"),
         Rule("lm_head/out/kernel", "lm_head.weight", lambda w: w.T * output_scale,
              lambda k: k.T)]
  decoder_layers = cfg.num_decoder_layers or cfg.num_layers
  for stack, count in (("encoder", cfg.num_layers), ("decoder", decoder_layers)):
    out += [Rule(f"{stack}/relative_bias/embedding",
                 f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
            Rule(f"{stack}/final_norm/scale", f"{stack}.final_layer_norm.weight")]
    for i in range(count):
      ours, theirs = f"{stack}/layer_{i}", f"{stack}.block.{i}.layer"
      out += [Rule(f"{ours}/attention_norm/scale", f"{theirs}.0.layer_norm.weight"),
              *_attention(f"{ours}/attention", f"{theirs}.0.SelfAttention", cfg)]
      mlp = 1
      if stack == "decoder":
        out += [Rule(f"{ours}/cross_attention_norm/scale", f"{theirs}.1.layer_norm.weight"),
                *_attention(f"{ours}/cross_attention", f"{theirs}.1.EncDecAttention", cfg)]
        mlp = 2
      out += [Rule(f"{ours}/mlp_norm/scale", f"{theirs}.{mlp}.layer_norm.weight"),
              *_mlp(f"{ours}/mlp", f"{theirs}.{mlp}.DenseReluDense", cfg)]
  return out


def load_params(folder, cfg):
  """model.safetensors as our nested float32 params (unscanned layout) for ModelConfig `cfg`; a
  file without `lm_head.weight` has its output layer tied to `shared.weight`."""
  folder = hf_files.require_files(folder, KIND)
  hf = read_config(folder)
  tensors = hf_files.read_tensors(folder)
  if "shared.weight" in tensors:   # transformers ties a missing output layer to the table
    tensors.setdefault("lm_head.weight", tensors["shared.weight"])
  scale = cfg.embed_dim ** -0.5 if scales_output(hf) else 1.0
  return import_tensors(tensors, rules(cfg, scale), folder / "model.safetensors")


def hf_config(cfg, special_ids):
  """config.json of ModelConfig `cfg`; `special_ids` {'eos_token_id': i, ...} of its tokenizer."""
  return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE,
          "vocab_size": cfg.vocab_size, "d_model": cfg.embed_dim, "d_kv": cfg.qkv_dim,
          "d_ff": cfg.mlp_dim, "num_layers": cfg.num_layers,
          "num_decoder_layers": cfg.num_decoder_layers or cfg.num_layers,
          "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_buckets,
          "relative_attention_max_distance": cfg.relative_max_distance,
          "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_eps,
          "feed_forward_proj": {v: k for k, v in MLPS.items()}[cfg.mlp],
          "is_encoder_decoder": True, "tie_word_embeddings": False, "dtype": "float32",
          **special_ids}


def check_exportable(cfg):
  """Raises ValueError unless the ModelConfig `cfg` is a model HF T5 can hold."""
  for key, value in EXPORTABLE.items():
    if getattr(cfg, key) != value:
      raise ValueError(f"model.{key}={getattr(cfg, key)!r}: HF T5 needs {key}={value!r}")
  if cfg.mlp not in MLPS.values():
    raise ValueError(f"model.mlp={cfg.mlp!r}: HF T5 needs one of {sorted(MLPS.values())}")
  if cfg.kv_heads != cfg.num_heads:
    raise ValueError(f"model.num_kv_heads={cfg.num_kv_heads}: HF T5 has no grouped-query "
                     f"attention (needs 0, or num_heads)")


def export(params, cfg, out_dir, special_ids):
  """Writes params of a T5-preset encoder-decoder as an untied T5ForConditionalGeneration
  folder (a tied model's output layer is written as a copy of its token table)."""
  check_exportable(cfg)
  flat = params
  if cfg.tie_embeddings:
    flat = {**params, "lm_head": {"out": {"kernel": params["token_embed"]["embedding"].T}}}
  return hf_files.write(out_dir, export_params(flat, rules(cfg)), hf_config(cfg, special_ids))
