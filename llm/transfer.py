"""Starting a run from pretrained weights (`config.init`).

`init` is "" (from scratch), a workdir of ours (its latest checkpoint), a Hugging Face BERT,
GPT-2, Llama or T5 folder (config.json + model.safetensors, and its tokenizer), "minilm", a Llama
GGUF file, or "smollm2". The source decides the model's shape and tokenizer; every tensor the new
model shares with it (same path, same shape) is loaded, and heads the source lacks (e.g. a
classifier) keep their fresh initialisation. An encoder-decoder config started from an encoder
is a BERT2BERT warm start (Rothe et al., 2020): both stacks take the encoder's layers, the
decoder's cross-attention starts fresh.
"""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

from llm import convert, gguf_files, runlog, state as state_lib, weights
from llm.convert import gguf_llama, hf_bert, hf_formats
from llm.data import hf_tokenizer
from llm.models import model_config
# The layer layout is not among them: params convert to the run's own model.scan_layers.
from llm.models.config import ARCHITECTURE_KEYS, ModelConfig


def resolve_init(config):
  """Copies the init source's architecture and tokenizer into `config` (in place)."""
  if not config.init:
    return config
  path = pathlib.Path(config.init).expanduser()
  if weights.is_workdir(path):
    source = weights.saved_config(path, f"init={config.init!r}")
    if "family" not in source["model"]:
      raise ValueError(f"init={config.init!r} was trained before model families existed (its "
                       f"parameter names differ); retrain it")
    config.vocab_size = source["vocab_size"]
    config.extra_ids = source.get("extra_ids", 0)
    warm_start = _encoder_to_encoder_decoder(config, source["model"].get("family"))
    for key in ARCHITECTURE_KEYS:   # a key added since the init was trained: its default
      config.model[key] = source["model"].get(key, ModelConfig.defaults()[key])
    _keep_encoder_decoder(config, warm_start)
    if (path / "tokenizer.model").is_file():
      config.tokenizer.update(kind="sentencepiece", path=str(path / "tokenizer.model"))
    else:
      tokenizer = source.get("tokenizer")
      if not isinstance(tokenizer, dict) or not tokenizer.get("path"):
        raise ValueError(f"init={config.init!r} holds no tokenizer.model and its config.json "
                         f"names no tokenizer.path; the workdir is damaged")
      config.tokenizer.update(kind=tokenizer.get("kind", "sentencepiece"), path=tokenizer["path"])
    return config
  if config.init not in ("minilm", "smollm2") and not path.exists():
    raise FileNotFoundError(f"init={config.init!r} does not exist; init is one of our workdirs, "
                            f"a Hugging Face BERT, GPT-2, Llama or T5 folder, a Llama .gguf "
                            f"file, 'minilm' or 'smollm2'")
  if gguf_files.is_gguf(config.init):
    overrides = gguf_llama.model_overrides(gguf_files.read(config.init))
    tokenizer = dict(kind="gguf", path=str(config.init))
  else:
    model_dir = hf_bert.resolve_model_dir(config.init)
    fmt = hf_formats.of_folder(model_dir)
    overrides = fmt.model_overrides(model_dir)
    tokenizer = dict(kind="wordpiece" if fmt is hf_bert else "huggingface", path=str(model_dir))
    if fmt is not hf_bert:   # rows past the tokenizer's pieces (T5's 32,128 for 32,100) are masked
      pieces = hf_tokenizer.FolderTokenizer(model_dir).vocab_size
      overrides["model"]["unused_vocab"] = max(overrides["vocab_size"] - pieces, 0)
  config.vocab_size = overrides["vocab_size"]
  warm_start = _encoder_to_encoder_decoder(config, overrides["model"]["family"])
  config.model.update({k: v for k, v in overrides["model"].items() if k in ARCHITECTURE_KEYS})
  _keep_encoder_decoder(config, warm_start)
  config.tokenizer.update(tokenizer)
  return config


def _encoder_to_encoder_decoder(config, source_family):
  """Whether this is a BERT2BERT warm start (Rothe et al., 2020): an encoder-decoder config
  whose init is an encoder (a BERT, MiniLM). Its encoder and its decoder both start from the
  encoder's layers and embeddings; the decoder's cross-attention starts fresh."""
  return config.model.family == "encoder_decoder" and source_family == "encoder"


def _keep_encoder_decoder(config, warm_start):
  if warm_start:   # the encoder's layout, in both stacks
    config.model.update(family="encoder_decoder", num_decoder_layers=config.model.num_layers)


def _merge(target, source, path, loaded):
  """`target` with every leaf that `source` has at the same path replaced (shapes must match)."""
  out = {}
  for key, value in target.items():
    where = f"{path}/{key}" if path else key
    if key not in source:
      out[key] = value
    elif isinstance(value, dict):
      out[key] = _merge(value, source[key], where, loaded)
    else:
      if tuple(source[key].shape) != tuple(value.shape):
        raise ValueError(f"init: {where} has shape {tuple(source[key].shape)} in the source but "
                         f"{tuple(value.shape)} in this model; use a config with the source's "
                         f"shape")
      out[key] = jax.device_put(jnp.asarray(source[key], value.dtype), value.sharding)
      loaded.append(where)
  return out


def _prompt_from_vocabulary(params, seed):
  """Soft prompt vectors copied from the embeddings of random tokens: prompt tuning of a
  pretrained model starts better from there than from random vectors (Lester et al., 2021)."""
  stack = "encoder" if "encoder" in params else "decoder"
  embedding, prompt = params["token_embed"]["embedding"], params[stack]["prompt"]
  # Tokens from the common part of the vocabulary, past the special and rare ones at the ends.
  low, high = min(1000, embedding.shape[0] // 10), min(5000, embedding.shape[0])
  ids = np.random.default_rng(seed).choice(np.arange(low, high), prompt.shape[0], replace=False)
  # jnp, not numpy: in a multi-process run no process holds the whole embedding table.
  rows = jnp.take(embedding, jnp.asarray(ids), axis=0).astype(prompt.dtype)
  return jax.device_put(rows, prompt.sharding)


def load_pretrained(config, params, mesh, require_all=False):
  """Returns `params` with the init source's tensors loaded into it. `require_all`: raise if the
  source lacks any of them (evaluating an untrained head would measure noise)."""
  path = pathlib.Path(config.init).expanduser()
  if weights.is_workdir(path):
    source = weights.workdir_params(path, mesh)[0]
  elif gguf_files.is_gguf(config.init):
    source = gguf_llama.load_params(gguf_files.read(config.init), model_config(config))
  else:
    model_dir = hf_bert.resolve_model_dir(config.init)
    source = hf_formats.of_folder(model_dir).load_params(model_dir, model_config(config))
  if (model_config(config).family == "encoder_decoder" and "encoder" in source
      and "decoder" not in source):
    # BERT2BERT: the decoder starts as a copy of the encoder (its cross-attention fresh).
    source = dict(source, decoder=source["encoder"])
    runlog.log("init: BERT2BERT warm start: the decoder starts from the encoder's layers and "
               "embeddings; its cross-attention is new")
  source = convert.to_layout(source, scan=bool(config.model.scan_layers))
  loaded = []
  merged = _merge(params, source, "", loaded)
  for stack in ("encoder", "decoder"):
    if "prompt" in merged.get(stack, {}) and "prompt" not in source.get(stack, {}):
      merged[stack] = dict(merged[stack], prompt=_prompt_from_vocabulary(merged, config.seed))
  # What starts fresh, named by top-level module; inside encoder/decoder by the module of a layer
  # (a BERT2BERT decoder's `layer_*/cross_attention`) or of the stack.
  def part(p):
    parts = p.split("/")
    if parts[0] not in ("encoder", "decoder"):
      return parts[0]
    if re.fullmatch(r"layer_\d+|layers", parts[1]) and len(parts) > 2:
      return "/".join([parts[0], re.sub(r"_\d+$", "_*", parts[1]), parts[2]])
    return "/".join(parts[:2])
  fresh = sorted({part(p) for p in state_lib.param_paths(params)} - {part(p) for p in loaded})
  if not loaded:
    raise ValueError(f"init={config.init!r} shares no parameters with this model")
  if require_all and fresh:
    raise ValueError(f"init={config.init!r} has no {', '.join(fresh)} for this model, so it "
                     f"cannot be evaluated as is; train first with llm.train")
  runlog.log(f"init: loaded {len(loaded)} tensors from {config.init}; newly initialised: "
             f"{', '.join(fresh) or 'nothing'}")
  return merged


def init_params(config, model, mesh):
  """`model`'s params wholly from config.init, on `mesh` (zero-shot evaluation, generation from
  an init): every parameter must come from the source."""
  abstract = state_lib.abstract_params(model, config, mesh)
  zeros = jax.jit(lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract),
                  out_shardings=jax.tree.map(lambda a: a.sharding, abstract))()
  return load_pretrained(config, zeros, mesh, require_all=True)
