"""Whether a saved step fits the config that reads it: the same model shape and heads, the same
tokenizer file, and (for a resume) the same data stream and optimisation."""
import json

from llm import checksums, tasks
from llm.base_config import from_saved
from llm.models.config import SHAPE_KEYS

# Settings that change the data stream or how it is optimised: a resume must keep them (unless
# allow_changed_config), these and each task's own (Task.stream_keys). total_steps may grow,
# learning rates and the mesh may change.
STREAM_KEYS = ("objective", "corpus", "mixture", "data_files", "train_examples", "seed",
               "batch_size", "input_shards", "seq_len", "vocab_size", "extra_ids", "tokenizer",
               "optimizer.grad_accum_steps")


def stream_keys():
  return STREAM_KEYS + tuple(k for task in tasks.all_tasks() for k in task.stream_keys)


def _flat(node, prefix=""):
  out = {}
  for key, value in node.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def changed_settings(saved, config):
  """'key saved vs now' for every stream_keys() setting the resuming config changes."""
  keys = stream_keys()
  before = _flat(json.loads(from_saved(saved).to_json()))
  now = _flat(json.loads(config.to_json()))
  return [f"{key} {before.get(key)!r} vs {now.get(key)!r}" for key in sorted(set(before) | set(now))
          if any(key == k or key.startswith(k + ".") for k in keys)
          and before.get(key) != now.get(key)]


def check_shape(saved, config, step_dir, layout_may_differ=False):
  """Raises ValueError when the checkpoint was written for a differently shaped model (or, unless
  `layout_may_differ`, with the other layer layout)."""
  model = saved.get("model", {})
  diffs = []
  for key in ("vocab_size", "extra_ids"):
    if saved.get(key, 0) != config.get(key, 0):
      diffs.append(f"{key} {saved.get(key, 0)} vs {config.get(key, 0)}")
  for key in SHAPE_KEYS:
    if model.get(key) != config.model.get(key):
      diffs.append(f"model.{key} {model.get(key)} vs {config.model.get(key)}")
  saved_heads = tasks.get_task(saved["objective"]).heads(from_saved(saved))
  heads = tasks.get_task(config.objective).heads(config)
  if tuple(saved_heads) != tuple(heads):
    diffs.append(f"heads {list(saved_heads)} vs {list(heads)}")
  if diffs:
    raise ValueError(f"checkpoint {step_dir} was saved for another model shape (checkpoint vs "
                     f"config: {', '.join(diffs)}); use the same model settings or a new --workdir")
  scanned = bool(model.get("scan_layers"))
  if not layout_may_differ and scanned != bool(config.model.scan_layers):
    raise ValueError(f"checkpoint {step_dir} stores its layers with model.scan_layers={scanned}; "
                     f"set --config.model.scan_layers={scanned}, or add "
                     f"--config.convert_layout=True to convert it as it is restored")


def tokenizer_record(tok):
  """What a checkpoint records of the tokenizer it was trained with: the ids it saves mean
  pieces of exactly this file."""
  return {"path": str(tok.path), "sha256": checksums.sha256(tok.path)}


def check_tokenizer(step_dir, tok):
  """ValueError when `tok` is not the tokenizer the step was trained with (its file's SHA-256
  differs): the model would read every id as another piece. Call after the step's files were
  checked against its SHA256SUMS."""
  record_file = step_dir / "tokenizer" / "metadata"
  if not record_file.is_file():   # a step saved before checkpoints recorded their tokenizer
    return
  saved = json.loads(record_file.read_text())
  now = checksums.sha256(tok.path)
  if saved["sha256"] == now:
    return
  own = step_dir.parent.parent / "tokenizer.model"
  fix = (f"--config.tokenizer.path={own}"
         if own.is_file() and checksums.sha256(own) == saved["sha256"]
         else "the tokenizer settings the run was trained with (its config.json)")
  raise ValueError(f"checkpoint {step_dir} was trained with the tokenizer {saved['path']} "
                   f"(sha256 {saved['sha256'][:12]}), not {tok.path} (sha256 {now[:12]}): its "
                   f"ids would be read as other pieces; use {fix}")
