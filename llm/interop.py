"""Our forward pass against transformers' on the same weights (a BERT folder, a GGUF Llama): the
`compare` command of python -m llm.hf. Exports are in exports.py, the name maps in convert/."""
import contextlib
import io
import os

import jax
import numpy as np

from llm import gguf_files
from llm.base_config import base_config
from llm.convert import gguf_llama, hf_bert
from llm.data.bpe import BpeTokenizer
from llm.data.wordpiece import WordPieceTokenizer
from llm.models import build_model, model_config


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
