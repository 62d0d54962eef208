"""Weights in and out of other tools (python -m llm.hf is the command): our forward pass against
transformers' on the same weights (a BERT folder, a GGUF Llama), and a checkpoint exported as a
Hugging Face folder with its tokenizer. The name maps are in convert/."""
import contextlib
import io
import json
import os
import pathlib
import shutil

import jax
import numpy as np

from llm import cli, gguf_files, lora, parallel, tasks, weights
from llm.base_config import base_config
from llm.convert import gguf_llama, hf_bert, hf_formats, sentencepiece_hf
from llm.data.tokenizer import BOS, EOS, PAD
from llm.data.bpe import BpeTokenizer
from llm.data.wordpiece import WordPieceTokenizer
from llm.models import build_model, heads as heads_lib, model_config


def _reference_libraries():
  """torch and transformers, the reference `compare` checks against (test extras)."""
  try:
    import torch
    import transformers
  except ModuleNotFoundError as e:
    raise ValueError(f"compare needs the pip package {e.name} (the test extras): run "
                     f"`bash scripts/setup.sh --test` or `pip install -r requirements-test.txt`"
                     ) from None
  return torch, transformers


def bert_config(model_dir):
  """An experiment config whose model is the BERT in `model_dir`."""
  config = base_config()
  config.update(hf_bert.model_overrides(model_dir))
  return config


def compare_gguf(name, texts):
  """Next-token logits of `texts` from our decoder and from transformers' Llama loading the
  same GGUF file; prints and returns the largest absolute difference."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  torch, transformers = _reference_libraries()
  transformers.logging.disable_progress_bar()
  gguf_file = gguf_files.read(name)
  tok = BpeTokenizer(gguf_file)
  config = base_config()
  config.update(gguf_llama.model_overrides(gguf_file))
  model = build_model(config, heads=("lm",))
  params = gguf_llama.load_params(gguf_file, model_config(config))
  # The weights are an argument: closed over, XLA would fold 135M constants into the program.
  forward = jax.jit(lambda p, ids: model.apply({"params": p}, {"inputs": ids})["lm"])
  # Its GGUF reader draws a tqdm bar of its own, which disable_progress_bar does not reach.
  with contextlib.redirect_stderr(io.StringIO()):
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_file.path.parent, gguf_file=gguf_file.path.name, dtype=torch.float32).eval()
  worst = 0.0
  for text in texts:
    ids = np.asarray([[tok.bos_id] * tok.add_bos + tok.encode(text)], np.int32)
    ours = np.asarray(forward(params, ids))
    with torch.no_grad():
      theirs = reference(input_ids=torch.from_numpy(ids).long()).logits.numpy()
    diff = float(np.abs(ours - theirs).max())
    worst = max(worst, diff)
    print(f"{ids.shape[1]:4d} tokens, max |logit| {np.abs(theirs).max():.1f}, diff {diff:.3e}: "
          f"{text}")
  m = config.model
  print(f"{gguf_file.path.name}: {m.num_layers} layers, embed {m.embed_dim}, {m.num_heads} heads "
        f"({m.num_kv_heads} kv), vocab {config.vocab_size}")
  print(f"max_abs_diff={worst:.3e}", flush=True)
  return worst


def compare(model_dir, texts):
  """Encodes `texts` ([CLS] text [SEP], padded) with our model and transformers.BertModel;
  prints and returns the largest absolute difference of the final hidden states. A GGUF model
  (`smollm2`, *.gguf) compares next-token logits instead (compare_gguf)."""
  if gguf_files.is_gguf(model_dir):
    return compare_gguf(model_dir, texts)
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  torch, transformers = _reference_libraries()
  transformers.logging.disable_progress_bar()

  model_dir = hf_bert.resolve_model_dir(model_dir)
  tok = WordPieceTokenizer(model_dir)
  ids = [[tok.cls_id, *tok.encode(text), tok.sep_id] for text in texts]
  tokens = np.zeros((len(ids), max(map(len, ids))), np.int32)   # padded with 0 = [PAD]
  for row, seq in zip(tokens, ids):
    row[:len(seq)] = seq
  config = bert_config(model_dir)
  if tokens.shape[1] > config.model.max_len:
    raise ValueError(f"a --text has {tokens.shape[1]} tokens; this model takes at most "
                     f"{config.model.max_len}")
  model = build_model(config, heads=())
  ours = model.apply({"params": hf_bert.load_params(model_dir)}, {"inputs": tokens})["hidden"]

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


# Written last into every export folder: which files the export wrote (a later export into the
# same folder replaces exactly those), from which workdir and step.
EXPORT_RECORD = "llm_export.json"


def export_folder(out):
  """`out` as an absolute path, if an export may write there: a new or empty folder, or an
  earlier export's (whose files it replaces); never a workdir or a folder of other files."""
  path = pathlib.Path(out).expanduser().absolute()
  if path.exists() and not path.is_dir():
    raise ValueError(f"--out={out} is a file; an export writes a folder: name a new or empty one")
  if (path / "checkpoints").exists() or weights.is_workdir(path):
    raise ValueError(f"--out={out} is a training workdir, which an export never writes into: "
                     f"name a new or empty folder")
  if path.is_dir():
    ours = set()
    if (path / EXPORT_RECORD).is_file():
      try:
        ours = set(json.loads((path / EXPORT_RECORD).read_text())["files"])
      except (ValueError, KeyError, TypeError):
        pass
    others = sorted(p.name for p in path.iterdir() if p.name not in ours | {EXPORT_RECORD})
    if others:
      raise ValueError(f"--out={out} holds files an export did not write ({', '.join(others[:3])}"
                       f"{', ...' if len(others) > 3 else ''}), which it would not overwrite: "
                       f"name a new or empty folder")
    for name in ours:
      (path / name).unlink(missing_ok=True)
  return path


def export_checkpoint(workdir, out):
  """Writes the params of the latest checkpoint in `workdir` as a Hugging Face folder of the class
  that holds its model (BERT with its task's head, GPT-2, Llama or T5), with its tokenizer. The
  model is the one saved with the checkpoint, so fine-tuned runs need no flags to rebuild it."""
  workdir = cli.workdir_path(workdir, create=False, writable=False)
  out = export_folder(out)
  # Restore unsharded onto one device, whatever mesh the run used.
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params, config, step = weights.workdir_params(workdir, mesh)
  if "lora" in params:   # Hugging Face has no adapters: fold them into the kernels
    params = lora.merge(params, config.lora)
  task = tasks.get_task(config.objective)
  heads = task.heads(config)
  cfg = model_config(config)
  fmt = hf_formats.of_model(cfg)
  if fmt is hf_bert:
    # The class names the run resolved from its corpus (config.json holds them).
    names = list(config.label_names) if set(heads_lib.CLASS_HEADS) & set(heads) else []
    path = hf_bert.export(params, cfg, heads, out, names or None,
                          architecture=task.export_class(config))
  elif tuple(heads) != ("lm",):
    raise ValueError(f"the run's model has heads {list(heads)}; {fmt.ARCHITECTURE} holds a "
                     f"language model's ('lm') only")
  else:
    path = fmt.export(params, cfg, out, special_ids(cfg))
  tokenizer = config.get("tokenizer", {})
  if tokenizer.get("kind") == "wordpiece":   # an HF vocabulary: ship it, the folder is complete
    source = pathlib.Path(tokenizer["path"]).expanduser()
    source = source if source.is_dir() else source.parent
    for name in hf_bert.TOKENIZER_FILES:
      if (source / name).is_file():
        shutil.copyfile(source / name, path / name)
  elif (workdir / "tokenizer.model").is_file():   # the run's SentencePiece model, converted
    sentencepiece_hf.export(workdir / "tokenizer.model", path, cfg)
  else:
    print(f"note: {workdir} holds no tokenizer.model; the folder has no tokenizer")
  files = sorted(f.name for f in path.iterdir() if f.name != EXPORT_RECORD)
  (path / EXPORT_RECORD).write_text(json.dumps({"workdir": str(workdir), "step": step,
                                                "files": files}, indent=2))
  architecture = json.loads((path / "config.json").read_text())["architectures"][0]
  print(f"step {step} of {workdir} -> {path} ({architecture}): {', '.join(files)}")


def special_ids(cfg):
  """config.json's token ids of a model over our SentencePiece ids: texts start with <s> and end
  with </s>, <pad> pads, and an encoder-decoder's decoder starts from <s>."""
  ids = {"pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS}
  if cfg.family == "encoder_decoder":
    ids["decoder_start_token_id"] = BOS
  return ids
