"""Orbax checkpoints: the sharded train state, the data-iterator position and the config, saved
together in one step directory so they are always consistent.

What we add to Orbax: each step directory gets a SHA256SUMS file (written by the save's background
thread before the step is committed, so every committed step has one; `sha256sum -c SHA256SUMS`
checks it by hand) that is verified before a step is read; a failed save is one SaveFailed error
naming the step and the cause, with its partial files removed."""
import errno
import functools
import hashlib
import json
import os
import pathlib
import re
import shutil
import sys
import threading
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from llm import parallel
from llm.data import pipeline
from llm.base_config import from_saved

# Model settings that change which parameters exist or their shapes: a checkpoint only restores
# if these match (the layer layout, model.scan_layers, is checked on its own: it converts).
SHAPE_KEYS = ("family", "num_layers", "num_decoder_layers", "embed_dim", "num_heads",
              "num_kv_heads", "head_dim", "mlp_dim", "mlp", "use_bias", "max_len", "position",
              "relative_buckets", "norm_kind", "embed_norm", "type_vocab_size", "tie_embeddings",
              "prompt_length")


# Settings that change the data stream or how it is optimised: a resume must keep them (unless
# allow_changed_config). total_steps may grow, learning rates and the mesh may change.
STREAM_KEYS = ("objective", "corpus", "data_files", "seed", "batch_size", "input_shards", "seq_len",
               "vocab_size", "extra_ids", "tokenizer", "nsp", "masking", "mask_prob",
               "span_corruption", "qa", "cloze", "optimizer.grad_accum_steps")


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


SUMS = "SHA256SUMS"
TMP_SUFFIX = ".orbax-checkpoint-tmp"   # Orbax writes a step there, then renames it
_saving = {}   # checkpoints directory -> the step whose save is in flight (until waited for)


@functools.cache
def _array_handler_for_backend():
  """Orbax splits each replicated array across its replicas to write the parts in parallel: on
  CPU devices, which share one host memory, that only costs an op-by-op slice per part (~860,
  1.5 s, on the first save of a tiny model on 8 devices). Orbax turns it off on GPUs itself."""
  if jax.default_backend() != "cpu":
    return
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)   # not a warning that it overrides the default
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
  logging.set_verbosity(verbosity)


def make_manager(workdir, keep, create=True):
  """The manager of DIR/checkpoints; create=False for readers, which must not leave an empty
  checkpoints/ behind in a workdir that has none (writers also clear temporary directories a
  killed run left)."""
  _array_handler_for_backend()
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  seal = lambda: _write_sums(directory / f"{_saving[directory]}{TMP_SUFFIX}")
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=create, cleanup_tmp_directories=create,
          async_options=ocp.AsyncOptions(post_finalization_callback=seal)),
      item_names=("state", "data", "config", "tokenizer"))


def _item_files(step_dir):
  """The files of a step's items (state/, data/, config/): the step's own metadata file is
  rewritten after the commit, so it is not summed."""
  return sorted(p for item in step_dir.iterdir() if item.is_dir()
                for p in item.rglob("*") if p.is_file())


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _write_sums(step_dir):
  """SHA256SUMS of a finished, not yet committed step. Orbax runs this on the primary process
  only, after every process wrote its shards to the shared file system."""
  lines = [f"{_sha256(p)}  {p.relative_to(step_dir)}\n" for p in _item_files(step_dir)]
  (step_dir / SUMS).write_text("".join(lines))


def _mismatches(step_dir):
  """How the files of a step differ from its SHA256SUMS ("" when they do not). Every step this
  code ever saved has one, so a step without it is unreadable (its files could be anything)."""
  sums = step_dir / SUMS
  if not sums.is_file():
    return f"its {SUMS} is missing"
  bad = []
  for line in sums.read_text(errors="replace").splitlines():
    digest, _, name = line.partition("  ")
    path = step_dir / name
    if not name:
      bad.append(f"{SUMS} line {line[:40]!r} unreadable")
    elif not path.is_file():
      bad.append(f"{name} missing")
    else:
      try:
        if _sha256(path) != digest:
          bad.append(f"{name} changed")
      except OSError as e:   # a verdict, not an exception: process 0 must still tell the others
        bad.append(f"{name} unreadable ({e.strerror})")
  if not bad:
    return ""
  return (f"{len(bad)} file{'s differ' if len(bad) > 1 else ' differs'} from {SUMS}: {bad[0]}"
          + (", ..." if len(bad) > 1 else ""))


def _text_bytes(text, size):
  """`text` as `size` zero-padded bytes, the fixed shape a collective needs ("" is all zeros)."""
  raw = np.zeros(size, np.uint8)
  encoded = text.encode()[:size]
  raw[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  return raw


def _bytes_text(raw):
  return bytes(np.asarray(raw, np.uint8)).rstrip(b"\0").decode(errors="replace")


def from_first_process(text, size=1024):
  """Process 0's `text` on every process (a collective: all processes call it together)."""
  from jax.experimental import multihost_utils
  return _bytes_text(multihost_utils.broadcast_one_to_all(_text_bytes(text, size)))


def verify(step_dir):
  """Raises Unreadable if a file of the step differs from (or is missing against) the SHA256SUMS
  written with it, or has none. In a
  multi-process run process 0 reads and checks the files and tells the others: the checkpoint is
  read once, not once per host, and every process reaches the same verdict (one that went on
  restoring while another gave up would hang the run)."""
  cause = _mismatches(step_dir) if jax.process_index() == 0 else ""
  if jax.process_count() > 1:
    cause = from_first_process(cause)
  if cause:
    error = Unreadable(f"checkpoint {step_dir} does not match the checksums saved with it "
                       f"({cause})")
    error.cause = cause
    raise error


class SaveFailed(RuntimeError):
  """A save that did not complete (disk full, permissions, ...); the steps before it are intact."""


def _describe(error):
  """A failed write's cause in a few words: the OS error TensorStore reports, else its first
  line."""
  text = str(error)
  code = re.search(r"os_error_code='?(\d+)", text)
  if code:
    number = int(code.group(1))
    return f"{errno.errorcode.get(number, number)}: {os.strerror(number)}"
  first = text.splitlines()[0] if text else ""
  return f"{type(error).__name__}: {first[:200]}"


class _HeldStderr:
  """sys.stderr while a run saves in the background. When a save fails, Orbax and TensorStore
  threads print a traceback per array: other threads' writes are held until the save ends
  (printed if it succeeded, dropped if it failed: SaveFailed says why in one line); the main
  thread's go through, except while it waits on a save (Orbax logs the failure there too)."""

  def __init__(self, stream):
    self.stream, self.held, self._lock = stream, [], threading.Lock()
    self.main_muted = False

  def write(self, text):
    if threading.current_thread() is threading.main_thread():
      return len(text) if self.main_muted else self.stream.write(text)
    with self._lock:
      self.held.append(text)
    return len(text)

  def release(self, show):
    with self._lock:
      held, self.held = self.held, []
    if show and held:
      self.stream.write("".join(held))

  def close(self):
    """Puts sys.stderr back (the end of a run, however it ends)."""
    self.release(show=True)
    if sys.stderr is self:
      sys.stderr = self.stream

  def __getattr__(self, name):
    return getattr(self.stream, name)


def hold_background_stderr():
  """Holds background threads' stderr until each save ends (see _HeldStderr); close() it."""
  sys.stderr = _HeldStderr(sys.stderr)
  return sys.stderr


# What a failed write surfaces as: TensorStore's errors are ValueErrors, Orbax's barriers raise
# TimeoutError / RuntimeError, the file system OSError.
SAVE_ERRORS = (OSError, ValueError, RuntimeError, TimeoutError)


def _guard(manager, step, action):
  """Runs a manager call that may surface a background save's failure; raises it as one
  SaveFailed naming `step`."""
  held = sys.stderr if isinstance(sys.stderr, _HeldStderr) else None
  previous = sys.stderr
  if held:
    held.main_muted = True
  else:
    sys.stderr = _devnull()
  try:
    action()
  except SAVE_ERRORS as e:
    if held:
      held.release(show=False)
    raise _failed(pathlib.Path(manager.directory), step, e) from e
  finally:
    if held:
      held.main_muted = False
    else:
      sys.stderr = previous
  if held and not manager.is_saving_in_progress():
    held.release(show=True)


def _failed(directory, step, error):
  """The SaveFailed for `step`, after removing its partial files (writes still running may
  leave some: the next run's manager clears them)."""
  if jax.process_index() == 0:
    for tmp in directory.glob(f"*{TMP_SUFFIX}"):
      shutil.rmtree(tmp, ignore_errors=True)
  committed = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
  newest = max(committed, default=None)   # from disk: the manager forgot rotated steps
  return SaveFailed(
      f"saving checkpoint step {step} failed ({_describe(error)}); its partial files were "
      f"removed and the steps before it are intact (newest: "
      f"{newest if newest is not None else 'none'}); free space (or fix {directory}) and rerun "
      f"the same command to continue")


def save(manager, step, state, data_iterator, config, tokenizer):
  """Starts an asynchronous save of `step` (first waiting for the one in flight: SaveFailed if
  that one failed). `tokenizer`: tokenizer_record of the run's tokenizer."""
  wait(manager)
  _saving[pathlib.Path(manager.directory)] = step
  _guard(manager, step, lambda: manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
      config=ocp.args.JsonSave(json.loads(config.to_json())),
      tokenizer=ocp.args.JsonSave(tokenizer))))


def tokenizer_record(tok):
  """What a checkpoint records of the tokenizer it was trained with: the ids it saves mean
  pieces of exactly this file."""
  return {"path": str(tok.path), "sha256": _sha256(tok.path)}


def check_tokenizer(manager, step, tok):
  """ValueError when `tok` is not the tokenizer `step` was trained with (its file's SHA-256
  differs): the model would read every id as another piece. Call after saved_config (which
  checks the step's files against its SHA256SUMS)."""
  step_dir = pathlib.Path(manager.directory) / str(step)
  record_file = step_dir / "tokenizer" / "metadata"
  if not record_file.is_file():   # saved before checkpoints recorded their tokenizer
    return
  saved = json.loads(record_file.read_text())
  if saved["sha256"] == _sha256(tok.path):
    return
  own = step_dir.parent.parent / "tokenizer.model"
  fix = (f"--config.tokenizer.path={own}" if own.is_file() and _sha256(own) == saved["sha256"]
         else "the tokenizer settings the run was trained with (its config.json)")
  raise ValueError(f"checkpoint {step_dir} was trained with the tokenizer {saved['path']} "
                   f"(sha256 {saved['sha256'][:12]}), not {tok.path} (sha256 "
                   f"{_sha256(tok.path)[:12]}): its ids would be read as other pieces; use {fix}")


def check_saving(manager):
  """SaveFailed as soon as the save in flight has failed: cheap enough to call every step (a
  flag read while it runs, one wait when it ends)."""
  if pathlib.Path(manager.directory) in _saving and not manager.is_saving_in_progress():
    wait(manager)


def wait(manager):
  """Blocks until the save in flight (if any) is committed; SaveFailed if it failed."""
  directory = pathlib.Path(manager.directory)
  if directory in _saving:
    _guard(manager, _saving[directory], manager.wait_until_finished)
    del _saving[directory]


def saved_config(manager, step):
  """The config a step was saved with, after checking the step against its SHA256SUMS (this is
  the first read of a step on every path that restores one)."""
  step_dir = pathlib.Path(manager.directory) / str(step)
  verify(step_dir)
  read = lambda: manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  return _quiet_restore(read, step_dir)["config"]


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


def _unreadable(step_dir, cause):
  """The Unreadable error for `step_dir`, its short `cause` kept for the resume's warning."""
  error = Unreadable(f"checkpoint {step_dir} could not be restored ({cause})")
  error.cause = cause
  return error


def _described(e, width):
  """An exception as `Type: first line`, the line cut at `width` characters."""
  return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:width]}"


def everywhere(error, step_dir):
  """`error` (an Unreadable, or None where this process read its part) as all processes decide
  together: a step that any process could not read is unreadable for every one, with that
  process's cause. A collective, to be called before Orbax reads the step (its restore ends in
  one, which a process that gave up early would never join); without it a process that could
  not read a file only it reads would go back to an older step while the others trained on."""
  if jax.process_count() == 1:
    return error
  from jax.experimental import multihost_utils
  size = 512
  mine = "" if error is None else f"process {jax.process_index()}: {error.cause}"
  causes = np.asarray(multihost_utils.process_allgather(_text_bytes(mine, size)))
  failed = [text for text in map(_bytes_text, causes.reshape(-1, size)) if text]
  if failed:   # the same words on every process
    error = _unreadable(step_dir, failed[0])
  return error


_failed_reads = [0]   # restores that failed inside Orbax so far (every process counts the same)


def after_failed_read(error, step_dir):
  """`error`, this process's failure inside Orbax's read of `step_dir`, when every process of
  the run failed too (then all give the step up together, as one process would); otherwise a
  ValueError that ends this process. Orbax's restore ends in a device collective: processes that
  read the step wait there for this one, which cannot join them any more, so this one waits for
  the others' failures (through the coordination service, not a collective) for as long as a
  silent peer counts as alive. The first process to decide writes the verdict and every later
  one follows it, so a process whose collective broke because a peer stopped (its failure comes
  late, and finds the peer's) stops too instead of going back to an older step alone; the
  coordination service stops the processes still waiting in Orbax."""
  if jax.process_count() == 1:
    return error
  from jax._src import distributed   # the coordination service's client, as Orbax uses it
  client, count, index = distributed.global_state.client, jax.process_count(), jax.process_index()
  prefix = f"llm/failed_restore/{step_dir.name}/{_failed_reads[0]}"
  _failed_reads[0] += 1
  wait = parallel.peer_timeout()
  deadline, failed, verdict = time.monotonic() + wait, [], "stop"
  try:
    client.key_value_set(f"{prefix}/failed/{index}", error.cause)
    while len(failed) < count and time.monotonic() < deadline:
      time.sleep(0.2)
      failed = sorted(client.key_value_dir_get(f"{prefix}/failed"))
    try:   # the first verdict stands
      client.key_value_set(f"{prefix}/verdict", "skip" if len(failed) == count else "stop")
    except Exception:  # noqa: BLE001 - another process decided first
      pass
    verdict = client.blocking_key_value_get(f"{prefix}/verdict", 10_000)
  except Exception:  # noqa: BLE001 - the service is failing: a peer is gone, this one stops too
    pass
  if verdict == "skip" and len(failed) == count:   # the same cause (process 0's) on each
    return _unreadable(step_dir, f"process 0: {failed[0][1]}")
  others = sorted(set(range(count)) - {int(key.rsplit("/", 1)[1]) for key, _ in failed})
  why = (f"process {', '.join(map(str, others))} did not report failing to read it within "
         f"{wait} s" if others else "another process had already stopped over it")
  raise ValueError(
      f"checkpoint {step_dir} could not be restored on process {index} ({error.cause}), and "
      f"not alike on every process: {why}; nothing was moved or deleted. Fix what this process "
      f"cannot read, or move the step aside to resume from the one before, then rerun")


def _set_data_position(data_iterator, step_dir):
  """Sets the data iterator's position from `step_dir`: from this process's own file when it
  holds every input shard this process builds (the same processes and mesh as the saving run),
  else from every process's file merged (pipeline.merge_states: each holds the shards that
  process built). An Unreadable error naming the file that is unreadable, not JSON or not this
  pipeline's state."""
  data_dir = step_dir / "data"
  mine = data_dir / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  saved = sorted(data_dir.glob("process_*-of-*.json"))
  if not saved:
    raise ValueError(f"checkpoint {step_dir} holds no data position (data/process_*.json); it "
                     f"cannot resume training")
  def read(path):
    try:
      return json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001 - unreadable or not JSON
      raise _unreadable(step_dir, f"{path.relative_to(step_dir)} is unreadable "
                                  f"({_described(e, 120)})") from None
  try:
    if mine in saved:
      try:
        data_iterator.set_state(pipeline.merge_states([read(mine)]))
        return None
      except pipeline.MissingShard:
        pass   # saved by other processes or another mesh: the others' files hold the rest
    data_iterator.set_state(pipeline.merge_states([read(p) for p in saved]))
    return None
  except Unreadable as e:
    return e
  except Exception as e:  # noqa: BLE001 - not this pipeline's state
    where = mine if mine in saved else data_dir
    return _unreadable(step_dir, f"{where.relative_to(step_dir)} is unreadable "
                                 f"({_described(e, 120)})")


def move_aside(manager, step):
  """Renames an unreadable step to checkpoints/corrupt-<step> (kept for inspection, never read or
  rotated again); returns the new path. ValueError naming the step if it cannot be renamed."""
  source = manager.directory / str(step)
  target = manager.directory / f"corrupt-{step}"
  suffix = 1
  while target.exists():
    target, suffix = manager.directory / f"corrupt-{step}.{suffix}", suffix + 1
  try:
    os.rename(source, target)
  except OSError as e:
    raise ValueError(f"checkpoint {source} is unreadable and could not be moved aside to "
                     f"{target.name} ({e.strerror or type(e).__name__}); move or delete it "
                     f"yourself, then rerun") from None
  return target


_unmuted = []   # sys.stderr as it was before a failed restore muted it


@functools.cache
def _devnull():
  return open(os.devnull, "w")  # noqa: SIM115 - one stream, open until exit


def _quiet_restore(read, step_dir):
  """read() with sys.stderr muted; any failure becomes one Unreadable error naming `step_dir`
  (in a run of several processes, only when all of them failed: see after_failed_read).

  When one array fails to read, Orbax's other reader threads print tracebacks through
  sys.stderr as they die, racing with our error line: keep sys.stderr muted until a restore
  succeeds (a later one, of an older step), or for good if none does (the CLI writes its error
  to sys.__stderr__)."""
  if not _unmuted:
    _unmuted.append(sys.stderr)
  sys.stderr = _devnull()
  try:
    result = read()
  except Exception as e:  # noqa: BLE001 - whatever broke, this checkpoint cannot be used
    raise after_failed_read(_unreadable(step_dir, _described(e, 160)), step_dir) from e
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
  data iterator's position in place. An unreadable checkpoint raises one ValueError. The data
  position, a file each process reads for itself, is read first and agreed on by all."""
  step_dir = manager.directory / str(step)
  error = None
  if data_iterator is not None:
    # Set now, before any collective (a later, older step sets it again); every process's
    # verdict is shared below.
    error = _set_data_position(data_iterator, step_dir)
  error = everywhere(error, step_dir)
  if error:
    raise error
  read = lambda: manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]
  return _quiet_restore(read, step_dir)
