"""Orbax checkpoints: the sharded train state, the data-iterator position and the config, saved
together in one step directory so they are always consistent."""
import json
import os
import pathlib
import sys

import grain
import orbax.checkpoint as ocp

# Model settings that change parameter shapes: a checkpoint only restores if these match.
SHAPE_KEYS = ("num_layers", "embed_dim", "num_heads", "num_kv_heads", "head_dim", "mlp_dim",
              "max_len", "position", "type_vocab_size", "tie_embeddings", "heads", "prompt_length")
# Shape keys added later: the value older checkpoints were written with.
SHAPE_DEFAULTS = {"prompt_length": 0}


def make_manager(workdir, keep):
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=("state", "data", "config"))


def save(manager, step, state, data_iterator, config):
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
      config=ocp.args.JsonSave(json.loads(config.to_json()))))


def saved_config(manager, step):
  return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]


def check_compatible(saved, config, step_dir):
  """Raises ValueError when the checkpoint was written for a differently shaped model."""
  diffs = []
  if saved.get("vocab_size") != config.vocab_size:
    diffs.append(f"vocab_size {saved.get('vocab_size')} vs {config.vocab_size}")
  for key in SHAPE_KEYS:
    old = saved.get("model", {}).get(key, SHAPE_DEFAULTS.get(key))
    new = config.model.get(key, SHAPE_DEFAULTS.get(key))
    if isinstance(new, tuple):
      new = list(new)
    if old != new:
      diffs.append(f"model.{key} {old} vs {new}")
  if diffs:
    raise ValueError(f"checkpoint {step_dir} was saved for another model shape (checkpoint vs "
                     f"config: {', '.join(diffs)}); use the same model settings or a new --workdir")


def latest_compatible_step(manager, config):
  """The newest saved step, after checking it was written for `config`'s model shape."""
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; train first with llm.train")
  check_compatible(saved_config(manager, step), config, manager.directory / str(step))
  return step


def restore(manager, step, abstract_state, data_iterator=None):
  """Restores the state onto the shardings in `abstract_state` (any mesh) and, if given, the
  data iterator's position in place. An unreadable checkpoint raises one ValueError."""
  args = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  # When one array fails to read, Orbax's other reader threads print tracebacks through
  # sys.stderr as they die, racing with our error line: keep sys.stderr muted until the restore
  # succeeds (and for good if it fails; the CLI writes its error to sys.__stderr__).
  stderr, sys.stderr = sys.stderr, open(os.devnull, "w")
  try:
    state = manager.restore(step, args=ocp.args.Composite(**args))["state"]
  except Exception as e:  # noqa: BLE001 - whatever broke, this checkpoint cannot be used
    raise ValueError(f"checkpoint {manager.directory / str(step)} could not be restored "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); move it away to "
                     f"resume from an earlier one") from e
  sys.stderr = stderr
  return state
