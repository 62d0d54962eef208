"""Starting a run from pretrained weights (`config.init`).

`init` is "" (from scratch), a workdir of ours (its latest checkpoint), a Hugging Face BERT
folder (config.json + model.safetensors), or "minilm". The source decides the model's shape and
tokenizer; every tensor the new model shares with it (same path, same shape) is loaded, and heads
the source lacks (e.g. a classifier) keep their fresh initialisation.
"""
import json
import pathlib

import jax
import numpy as np

from llm import checkpoint, metrics, optim, state as state_lib
from llm.base_config import from_saved
from llm.models import build_model

# Model settings a fine-tuning run takes over from its init source.
ARCHITECTURE_KEYS = ("num_layers", "embed_dim", "num_heads", "num_kv_heads", "head_dim", "mlp_dim",
                     "max_len", "position", "rope_base", "norm", "layer_norm_eps", "causal",
                     "type_vocab_size", "tie_embeddings")


def _is_our_workdir(path):
  return (path / "checkpoints").is_dir() and (path / "config.json").is_file()


def resolve_init(config):
  """Copies the init source's architecture and tokenizer into `config` (in place)."""
  if not config.init:
    return config
  path = pathlib.Path(config.init).expanduser()
  if _is_our_workdir(path):
    source = json.loads((path / "config.json").read_text())
    config.vocab_size = source["vocab_size"]
    for key in ARCHITECTURE_KEYS:
      config.model[key] = source["model"][key]
    if (path / "tokenizer.model").is_file():
      config.tokenizer.update(kind="sentencepiece", path=str(path / "tokenizer.model"))
    else:
      config.tokenizer.update(kind=source["tokenizer"]["kind"], path=source["tokenizer"]["path"])
    return config
  from llm import hf
  model_dir = hf.resolve_model_dir(config.init)
  overrides = hf.bert_model_overrides(model_dir)
  config.vocab_size = overrides["vocab_size"]
  config.model.update({k: v for k, v in overrides["model"].items() if k in ARCHITECTURE_KEYS})
  config.tokenizer.update(kind="wordpiece", path=str(model_dir))
  return config


def _our_params(path, mesh):
  """The params of the latest checkpoint in one of our workdirs, on `mesh`."""
  source = from_saved(json.loads((path / "config.json").read_text()))
  manager = checkpoint.make_manager(path, source.keep_checkpoints)
  step = checkpoint.latest_compatible_step(manager, source)
  model, (optimizer, _) = build_model(source), optim.make_optimizer(source)
  abstract, _ = state_lib.state_shardings(model, optimizer, source, mesh)
  return checkpoint.restore(manager, step, abstract)["params"]


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
      out[key] = jax.device_put(np.asarray(source[key], value.dtype), value.sharding)
      loaded.append(where)
  return out


def _prompt_from_vocabulary(params, seed):
  """Soft prompt vectors copied from the embeddings of random tokens: prompt tuning of a
  pretrained model starts better from there than from random vectors (Lester et al., 2021)."""
  embedding, prompt = params["token_embed"]["embedding"], params["prompt"]
  # Tokens from the common part of the vocabulary, past the special and rare ones at the ends.
  low, high = min(1000, embedding.shape[0] // 10), min(5000, embedding.shape[0])
  ids = np.random.default_rng(seed).choice(np.arange(low, high), prompt.shape[0], replace=False)
  rows = np.asarray(jax.device_get(embedding))[ids]
  return jax.device_put(rows.astype(prompt.dtype), prompt.sharding)


def load_pretrained(config, params, mesh, require_all=False):
  """Returns `params` with the init source's tensors loaded into it. `require_all`: raise if the
  source lacks any of them (evaluating an untrained head would measure noise)."""
  path = pathlib.Path(config.init).expanduser()
  if _is_our_workdir(path):
    source = _our_params(path, mesh)
  else:
    from llm import hf
    source = hf.load_bert_params(hf.resolve_model_dir(config.init))
  loaded = []
  merged = _merge(params, source, "", loaded)
  if "prompt" in merged and "prompt" not in source:
    merged["prompt"] = _prompt_from_vocabulary(merged, config.seed)
  fresh = sorted({p.split("/")[0] for p in state_lib.param_paths(params)} -
                 {p.split("/")[0] for p in loaded})
  if not loaded:
    raise ValueError(f"init={config.init!r} shares no parameters with this model")
  if require_all and fresh:
    raise ValueError(f"init={config.init!r} has no {', '.join(fresh)} for this model, so it "
                     f"cannot be evaluated as is; train first with llm.train")
  metrics.log(f"init: loaded {len(loaded)} tensors from {config.init}; newly initialised: "
              f"{', '.join(fresh) or 'nothing'}")
  return merged
