"""Hugging Face Llama (LlamaForCausalLM) <-> our Llama-preset decoder: its config and name map.

Hugging Face stores Dense weights as (out, in) with the heads fused into one axis, and rotates
the two halves of each head for RoPE, as we do (GGUF files reorder those rows: gguf_llama.py).
"""
from llm.convert import Rule, export_params, hf_files, import_tensors
from llm.models import presets

MODEL_TYPE = "llama"
ARCHITECTURE = "LlamaForCausalLM"
KIND = "a Hugging Face Llama folder"
# LlamaConfig's defaults: transformers leaves keys out of config.json when they have these values.
DEFAULTS = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                head_dim=None, max_position_embeddings=2048, rms_norm_eps=1e-6,
                tie_word_embeddings=False, attention_dropout=0.0)
COMPUTES = dict(hidden_act="silu", attention_bias=False, mlp_bias=False, pretraining_tp=1)
EXPORTABLE = dict(family="decoder", norm="pre", norm_kind="rmsnorm", position="rope",
                  mlp="swiglu", use_bias=False, embed_norm=False, embed_scale=False,
                  type_vocab_size=0, prompt_length=0)


def rope(hf):
  """(rope_type, rope_theta) of config.json: `rope_parameters` since transformers 5, top-level
  `rope_theta` and `rope_scaling` before."""
  parameters = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  return (parameters.get("rope_type", parameters.get("type", "default")),
          float(parameters.get("rope_theta", hf.get("rope_theta", 10000.0))))


def read_config(folder):
  """config.json of `folder` with the defaults filled in, after checking our model computes it."""
  folder = hf_files.require_files(folder, KIND)
  path = folder / "config.json"
  hf = {**DEFAULTS, **hf_files.read_config(folder)}
  hf_files.check_values(hf, {"model_type": MODEL_TYPE, **COMPUTES}, path, "Llama")
  if rope(hf)[0] != "default":
    raise ValueError(f"{path} has rope_type={rope(hf)[0]!r}; only Llama checkpoints with "
                     f"rope_type='default' (no RoPE scaling) map onto our model")
  return hf


def model_overrides(folder):
  """The config values (`vocab_size` and `model.*`) that make our decoder this Llama."""
  hf = read_config(folder)
  heads = hf["num_attention_heads"]
  return {"vocab_size": hf["vocab_size"], "model": dict(
      presets.LLAMA, num_layers=hf["num_hidden_layers"], embed_dim=hf["hidden_size"],
      num_heads=heads, num_kv_heads=hf["num_key_value_heads"] or heads,
      head_dim=hf["head_dim"] or hf["hidden_size"] // heads, mlp_dim=hf["intermediate_size"],
      max_len=hf["max_position_embeddings"], rope_base=rope(hf)[1],
      layer_norm_eps=hf["rms_norm_eps"], attention_dropout_rate=hf["attention_dropout"],
      tie_embeddings=hf["tie_word_embeddings"])}


def _heads_in(embed, heads):   # (heads * head_dim, embed) <-> our (embed, heads, head_dim)
  return dict(to_ours=lambda w: w.T.reshape(embed, heads, -1),
              to_theirs=lambda k: k.reshape(embed, -1).T)


def _t(ours, theirs):   # a Dense kernel: theirs (out, in), ours (in, out)
  return Rule(ours, theirs, lambda w: w.T, lambda k: k.T)


def rules(cfg):
  """The name map of a Llama with ModelConfig `cfg`'s shapes."""
  heads, kv_heads, embed = cfg.num_heads, cfg.kv_heads, cfg.embed_dim
  out = [Rule("token_embed/embedding", "model.embed_tokens.weight"),
         Rule("decoder/final_norm/scale", "model.norm.weight")]
  if not cfg.tie_embeddings:
    out.append(_t("lm_head/out/kernel", "lm_head.weight"))
  for i in range(cfg.num_layers):
    ours, theirs = f"decoder/layer_{i}", f"model.layers.{i}"
    out += [Rule(f"{ours}/attention_norm/scale", f"{theirs}.input_layernorm.weight"),
            Rule(f"{ours}/attention/query/kernel", f"{theirs}.self_attn.q_proj.weight",
                 **_heads_in(embed, heads)),
            Rule(f"{ours}/attention/key/kernel", f"{theirs}.self_attn.k_proj.weight",
                 **_heads_in(embed, kv_heads)),
            Rule(f"{ours}/attention/value/kernel", f"{theirs}.self_attn.v_proj.weight",
                 **_heads_in(embed, kv_heads)),
            Rule(f"{ours}/attention/out/kernel", f"{theirs}.self_attn.o_proj.weight",
                 lambda w: w.T.reshape(heads, -1, embed), lambda k: k.reshape(-1, embed).T),
            Rule(f"{ours}/mlp_norm/scale", f"{theirs}.post_attention_layernorm.weight"),
            _t(f"{ours}/mlp/wi_gate/kernel", f"{theirs}.mlp.gate_proj.weight"),
            _t(f"{ours}/mlp/wi/kernel", f"{theirs}.mlp.up_proj.weight"),
            _t(f"{ours}/mlp/wo/kernel", f"{theirs}.mlp.down_proj.weight")]
  return out


def load_params(folder, cfg):
  """model.safetensors as our nested float32 params (unscanned layout) for ModelConfig `cfg`."""
  folder = hf_files.require_files(folder, KIND)
  return import_tensors(hf_files.read_tensors(folder), rules(cfg), folder / "model.safetensors")


def hf_config(cfg, special_ids):
  """config.json of ModelConfig `cfg`; `special_ids` {'bos_token_id': i, ...} of its tokenizer."""
  return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE,
          "vocab_size": cfg.vocab_size, "hidden_size": cfg.embed_dim,
          "intermediate_size": cfg.mlp_dim, "num_hidden_layers": cfg.num_layers,
          "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.kv_heads,
          "head_dim": cfg.qkv_dim, "hidden_act": "silu",
          "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.layer_norm_eps,
          "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
          "rope_theta": cfg.rope_base,   # where transformers 4 and llama.cpp's converter read it
          "attention_bias": False, "mlp_bias": False, "attention_dropout":
          cfg.attention_dropout_rate, "initializer_range": 0.02,
          "tie_word_embeddings": cfg.tie_embeddings, "dtype": "float32", **special_ids}


def check_exportable(cfg):
  """Raises ValueError unless the ModelConfig `cfg` is a model HF Llama can hold."""
  for key, value in EXPORTABLE.items():
    if getattr(cfg, key) != value:
      raise ValueError(f"model.{key}={getattr(cfg, key)!r}: HF Llama needs {key}={value!r}")


def export(params, cfg, out_dir, special_ids):
  """Writes params of a Llama-preset decoder as a LlamaForCausalLM folder."""
  check_exportable(cfg)
  return hf_files.write(out_dir, export_params(params, rules(cfg)), hf_config(cfg, special_ids))
