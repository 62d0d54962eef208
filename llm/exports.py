"""A run's latest checkpoint written for other tools (python -m llm.hf export): a Hugging Face
folder of the class that holds its model, with its tokenizer (tokenizer.json and
tokenizer_config.json, chat template included) and config.json's token ids from that tokenizer;
or, for a Llama with a GGUF file's tokenizer, a GGUF file. The name maps are in convert/."""
import json
import pathlib
import shutil

import jax

from llm import cli, convert, gguf_files, lora, parallel, tasks, weights
from llm.convert import gguf_hf, gguf_llama, hf_bert, hf_formats, hf_llama, sentencepiece_hf
from llm.data import tokenizer as tokenizer_lib
from llm.models import heads as heads_lib, model_config

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


def latest_params(workdir):
  """(params, config, step) of the workdir's latest checkpoint, unsharded on one device whatever
  mesh the run used, LoRA adapters folded into the kernels (no export format holds them)."""
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params, config, step = weights.workdir_params(workdir, mesh)
  if "lora" in params:
    params = lora.merge(params, config.lora)
  return params, config, step


def export_checkpoint(workdir, out):
  """Writes the params of the latest checkpoint in `workdir` as a Hugging Face folder of the class
  that holds its model (BERT with its task's head, GPT-2, Llama or T5), with its tokenizer. The
  model is the one saved with the checkpoint, so fine-tuned runs need no flags to rebuild it."""
  workdir = cli.workdir_path(workdir, create=False, writable=False)
  out = export_folder(out)
  params, config, step = latest_params(workdir)
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
    path = fmt.export(params, cfg, out, special_ids(run_tokenizer(config, workdir), cfg))
  export_tokenizer(config, workdir, path, cfg)
  files = sorted(f.name for f in path.iterdir() if f.name != EXPORT_RECORD)
  (path / EXPORT_RECORD).write_text(json.dumps({"workdir": str(workdir), "step": step,
                                                "files": files}, indent=2))
  architecture = json.loads((path / "config.json").read_text())["architectures"][0]
  print(f"step {step} of {workdir} -> {path} ({architecture}): {', '.join(files)}")


def run_tokenizer(config, workdir):
  """The tokenizer the run in `workdir` trained with (its own copy of a SentencePiece model)."""
  if config.tokenizer.kind == "sentencepiece":
    path = workdir / "tokenizer.model"
    return tokenizer_lib.Tokenizer(path) if path.is_file() else None
  return tokenizer_lib.LOADERS[config.tokenizer.kind](config, None)


def special_ids(tok, cfg):
  """config.json's token ids: texts start with the tokenizer's <s> and end with its </s>, id 0
  pads (as in every batch here), and an encoder-decoder's decoder starts from <s>."""
  if tok is None:
    return {"pad_token_id": 0}
  ids = {"pad_token_id": 0, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
  if cfg.family == "encoder_decoder":
    ids["decoder_start_token_id"] = tok.bos_id
  return ids


# A Hugging Face folder's tokenizer files, copied as they are.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "chat_template.jinja")


def export_tokenizer(config, workdir, out, cfg):
  """Writes the run's tokenizer into the export folder `out` so that AutoTokenizer reads it."""
  kind, source = config.tokenizer.kind, config.tokenizer.path
  if kind in ("wordpiece", "huggingface"):   # a Hugging Face folder's own: ship its files
    source = pathlib.Path(source).expanduser()
    source = source if source.is_dir() else source.parent
    for name in TOKENIZER_FILES:
      if (source / name).is_file():
        shutil.copyfile(source / name, out / name)
  elif kind == "gguf":
    gguf_hf.export(gguf_files.read(source), out, cfg.max_len)
  elif (workdir / "tokenizer.model").is_file():   # the run's SentencePiece model, converted
    sentencepiece_hf.export(workdir / "tokenizer.model", out, cfg)
  else:
    print(f"note: {workdir} holds no tokenizer.model; the folder has no tokenizer")


def export_gguf(workdir, out, dtype="f32"):
  """Writes the latest checkpoint of a Llama-preset run whose tokenizer is a GGUF file's (a
  fine-tuned SmolLM2) as the GGUF file `out`, with that tokenizer and its chat template, for
  llama.cpp and for transformers' gguf_file= loading."""
  if dtype not in gguf_llama.DTYPES:
    raise ValueError(f"--gguf_dtype={dtype!r}: expected one of {list(gguf_llama.DTYPES)}")
  out = pathlib.Path(out).expanduser().absolute()
  if out.suffix != ".gguf" or out.is_dir():
    raise ValueError(f"--out={out} is not a .gguf file name; name the file to write")
  if out.exists():
    raise ValueError(f"--out={out} exists, and an export never overwrites a file: name a new one")
  if not out.parent.is_dir():
    raise ValueError(f"--out={out}: the folder {out.parent} does not exist")
  workdir = cli.workdir_path(workdir, create=False, writable=False)
  params, config, step = latest_params(workdir)
  cfg = model_config(config)
  try:
    hf_llama.check_exportable(cfg)
  except ValueError as e:
    raise ValueError(f"GGUF export writes Llama-preset decoders; {e}") from None
  if config.tokenizer.kind != "gguf":
    raise ValueError(f"GGUF export writes the run's tokenizer from the GGUF file it came from "
                     f"(tokenizer.kind='gguf', as init=smollm2 runs have); this run's is "
                     f"{config.tokenizer.kind!r}: export a Hugging Face folder instead")
  heads = tasks.get_task(config.objective).heads(config)
  if tuple(heads) != ("lm",):
    raise ValueError(f"the run's model has heads {list(heads)}; a GGUF file holds a language "
                     f"model's ('lm') only")
  params = convert.to_layout(params, scan=False)
  gguf_llama.write(out, params, cfg, gguf_files.read(config.tokenizer.path), dtype)
  print(f"step {step} of {workdir} -> {out} ({dtype}, {out.stat().st_size / 2**20:.1f} MiB)")
