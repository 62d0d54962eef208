"""Orbax checkpoints: the sharded train state, the data-iterator position and the config, saved
together in one step directory so they are always consistent."""
import json
import os
import pathlib
import sys

import grain
import orbax.checkpoint as ocp

from llm.base_config import from_saved

# Model settings that change which parameters exist or their shapes: a checkpoint only restores
# if these match (the layer layout, model.scan_layers, is checked on its own: it converts).
SHAPE_KEYS = ("family", "num_layers", "num_decoder_layers", "embed_dim", "num_heads",
              "num_kv_heads", "head_dim", "mlp_dim", "mlp", "use_bias", "max_len", "position",
              "relative_buckets", "norm_kind", "embed_norm", "type_vocab_size", "tie_embeddings",
              "prompt_length")


# Settings that change the data stream or how it is optimised: a resume must keep them (unless
# allow_changed_config). total_steps may grow, learning rates and the mesh may change.
STREAM_KEYS = ("objective", "corpus", "data_files", "seed", "batch_size", "seq_len", "vocab_size",
               "extra_ids", "tokenizer", "nsp", "masking", "mask_prob", "span_corruption", "qa",
               "cloze", "optimizer.grad_accum_steps")


def _flat(node, prefix=""):
  out = {}
  for key, value in node.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def changed_settings(saved, config):
  """'key saved vs now' for every STREAM_KEYS setting the resuming config changes."""
  before = _flat(json.loads(from_saved(saved).to_json()))
  now = _flat(json.loads(config.to_json()))
  return [f"{key} {before.get(key)!r} vs {now.get(key)!r}" for key in sorted(set(before) | set(now))
          if any(key == k or key.startswith(k + ".") for k in STREAM_KEYS)
          and before.get(key) != now.get(key)]


def make_manager(workdir, keep, create=True):
  """The manager of DIR/checkpoints; create=False for readers, which must not leave an empty
  checkpoints/ behind in a workdir that has none."""
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create),
      item_names=("state", "data", "config"))


def save(manager, step, state, data_iterator, config):
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
      config=ocp.args.JsonSave(json.loads(config.to_json()))))


def saved_config(manager, step):
  read = lambda: manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  return _quiet_restore(read, manager.directory / str(step))["config"]


def check_compatible(saved, config, step_dir, layout_may_differ=False):
  """Raises ValueError when the checkpoint was written for a differently shaped model (or, unless
  `layout_may_differ`, with the other layer layout)."""
  from llm import tasks
  model = saved.get("model", {})
  if "family" not in model:
    raise ValueError(f"checkpoint {step_dir} was written before model families existed (its "
                     f"parameter names differ); train a new run in a new --workdir")
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


def latest_step(manager):
  """The newest saved step; FileNotFoundError when there is none."""
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; train first with llm.train")
  return step


class Unreadable(ValueError):
  """A saved step that cannot be read back (corrupt, truncated, half deleted)."""


def move_aside(manager, step):
  """Renames an unreadable step to checkpoints/corrupt-<step> (kept for inspection, never read or
  rotated again); returns the new path."""
  source = manager.directory / str(step)
  target = manager.directory / f"corrupt-{step}"
  suffix = 1
  while target.exists():
    target, suffix = manager.directory / f"corrupt-{step}.{suffix}", suffix + 1
  source.rename(target)
  return target


_unmuted = []   # sys.stderr as it was before a failed restore muted it


def _quiet_restore(read, step_dir):
  """read() with sys.stderr muted; any failure becomes one Unreadable error naming `step_dir`.

  When one array fails to read, Orbax's other reader threads print tracebacks through
  sys.stderr as they die, racing with our error line: keep sys.stderr muted until a restore
  succeeds (a later one, of an older step), or for good if none does (the CLI writes its error
  to sys.__stderr__)."""
  if not _unmuted:
    _unmuted.append(sys.stderr)
  sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - stays open while muted
  try:
    result = read()
  except Exception as e:  # noqa: BLE001 - whatever broke, this checkpoint cannot be used
    cause = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    error = Unreadable(f"checkpoint {step_dir} could not be restored ({cause})")
    error.cause = cause
    raise error from e
  sys.stderr = _unmuted.pop()
  return result


def restore_params(manager, step, abstract_params):
  """Only the params of a saved train state (no optimizer state is read), onto the shardings in
  `abstract_params`. An unreadable checkpoint raises one ValueError."""
  args = ocp.args.PyTreeRestore(
      item={"params": abstract_params},
      restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract_params)},
      partial_restore=True)
  step_dir = manager.directory / str(step)
  read = lambda: ocp.PyTreeCheckpointer().restore(step_dir / "state", args=args)["params"]
  return _quiet_restore(read, step_dir)


def restore(manager, step, abstract_state, data_iterator=None):
  """Restores the state onto the shardings in `abstract_state` (any mesh) and, if given, the
  data iterator's position in place. An unreadable checkpoint raises one ValueError."""
  args = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  read = lambda: manager.restore(step, args=ocp.args.Composite(**args))["state"]
  return _quiet_restore(read, manager.directory / str(step))
