"""Where params come from: one loader for the checkpoints of our workdirs (params only, no
optimizer state; any mesh; either layer layout) used by every entry point. Other formats come in
through llm/convert (transfer.py picks the source)."""
import json
import pathlib

import jax

from llm import checkpoint, compatibility, convert, state as state_lib
from llm.base_config import from_saved
from llm.models import build_model


def is_workdir(path):
  path = pathlib.Path(path)
  return (path / "checkpoints").is_dir() and (path / "config.json").is_file()


def saved_config(path, what):
  """The config.json of our workdir `path` as a dict; ValueError naming `what` (e.g. the init)
  if it is missing, not JSON, or not a run's config."""
  file = pathlib.Path(path) / "config.json"
  if not file.is_file():
    raise ValueError(f"{what} holds no config.json, so it is not a trained workdir of ours; "
                     f"train it with llm.train first")
  try:
    source = json.loads(file.read_text())
  except ValueError as e:   # UnicodeDecodeError included
    raise ValueError(f"{what}: its config.json is not readable JSON ({e}); the workdir is "
                     f"damaged") from None
  missing = [key for key, kind in (("model", dict), ("vocab_size", int))
             if not isinstance(source, dict) or not isinstance(source.get(key), kind)]
  if missing:
    raise ValueError(f"{what}: its config.json has no {' or '.join(missing)}, so it is not a "
                     f"run's config; the workdir is damaged or not one of ours")
  return source


def placed_in_layout(params, config, mesh):
  """`params` in config's layer layout (model.scan_layers), on the shardings config gives them."""
  if convert.layout_of(params) in (None, bool(config.model.scan_layers)):
    return params
  target = state_lib.abstract_params(build_model(config), config, mesh)
  return jax.tree.map(lambda x, t: jax.device_put(x, t.sharding),
                      convert.to_layout(params, config.model.scan_layers), target)


def checkpoint_params(checkpoints, step, config, mesh, tok=None):
  """The params saved at `step` of `checkpoints` (a checkpoint.Checkpoints) for a model shaped
  as `config`, on `mesh`, in config's layout; refused if `tok` is not the tokenizer they were
  trained with."""
  saved = checkpoints.saved_config(step)
  compatibility.check_shape(saved, config, checkpoints.step_dir(step), layout_may_differ=True)
  if tok is not None:
    compatibility.check_tokenizer(checkpoints.step_dir(step), tok)
  return placed_in_layout(_saved_params(checkpoints, step, from_saved(saved), mesh), config, mesh)


def _saved_params(checkpoints, step, saved, mesh):
  """The params of `step` as saved (`saved`: its config), on `mesh`."""
  abstract = state_lib.abstract_params(build_model(saved), saved, mesh)
  return checkpoints.restore_params(step, abstract)


def workdir_params(path, mesh):
  """(params, the config they were saved with, step) of the latest checkpoint in one of our
  workdirs, in the layout it was saved in. The step's files are read and checked once."""
  path = pathlib.Path(path).expanduser().absolute()
  source = from_saved(saved_config(path, f"workdir {path}"))
  checkpoints = checkpoint.Checkpoints(path, source.keep_checkpoints, create=False)
  step = checkpoints.require_latest_step()
  saved = from_saved(checkpoints.saved_config(step))
  return _saved_params(checkpoints, step, saved, mesh), saved, step
