"""A workdir's checkpoints: Orbax steps holding the sharded train state, the data position, the
config and the tokenizer record together, so they are always consistent.

`Checkpoints` owns the Orbax manager and what is in flight: it saves (asynchronously; a failed
save is one SaveFailed naming the step, its partial files removed), resumes from the newest
readable step (moving unreadable ones aside) and verifies each step against the SHA256SUMS
written with it (checksums.py) before reading it."""
import errno
import functools
import json
import os
import pathlib
import re
import shutil

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from llm import checksums, compatibility, convert, multihost, parallel, quiet, runlog
from llm.base_config import from_saved
from llm.data import position

TMP_SUFFIX = ".orbax-checkpoint-tmp"   # Orbax writes a step there, then renames it

# What a failed write surfaces as: TensorStore's errors are ValueErrors, Orbax's barriers raise
# TimeoutError / RuntimeError, the file system OSError.
SAVE_ERRORS = (OSError, ValueError, RuntimeError, TimeoutError)


class SaveFailed(RuntimeError):
  """A save that did not complete (disk full, permissions, ...); the steps before it are intact."""


class Unreadable(ValueError):
  """A saved step that cannot be read back (corrupt, truncated, half deleted); `cause` is the
  short reason the resume's warning quotes."""

  def __init__(self, message, cause):
    super().__init__(message)
    self.cause = cause


def _unreadable(step_dir, cause):
  return Unreadable(f"checkpoint {step_dir} could not be restored ({cause})", cause)


def _first_line(error, width):
  """An exception as `Type: first line`, the line cut at `width` characters."""
  return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:width]}"


def _write_failure(error):
  """A failed write's cause in a few words: the OS error TensorStore reports, else its first
  line."""
  code = re.search(r"os_error_code='?(\d+)", str(error))
  if code:
    number = int(code.group(1))
    return f"{errno.errorcode.get(number, number)}: {os.strerror(number)}"
  return _first_line(error, 200)


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


class Checkpoints:
  """DIR/checkpoints. create=False for readers, which must not leave an empty checkpoints/
  behind in a workdir that has none (writers also clear temporary directories a killed run
  left)."""

  def __init__(self, workdir, keep, create=True):
    _array_handler_for_backend()
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    self._keep, self._create = keep, create
    self._saving = None   # the step whose save is in flight, until waited for
    self._manager = self._open()

  def _open(self):
    seal = lambda: checksums.write(self.directory / f"{self._saving}{TMP_SUFFIX}")
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=self._create, cleanup_tmp_directories=self._create,
            async_options=ocp.AsyncOptions(post_finalization_callback=seal)),
        item_names=("state", "data", "config", "tokenizer"))

  def step_dir(self, step):
    return self.directory / str(step)

  def latest_step(self):
    """The newest saved step, or None."""
    return self._manager.latest_step()

  def require_latest_step(self):
    """The newest saved step; FileNotFoundError when there is none."""
    step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}; train first with llm.train")
    return step

  # Saving.

  def save(self, step, state, data_iterator, config, tokenizer):
    """Starts an asynchronous save of `step` (first waiting for the one in flight: SaveFailed if
    that one failed). `tokenizer`: compatibility.tokenizer_record of the run's tokenizer."""
    self.wait()
    self._saving = step
    self._guard(step, lambda: self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
        config=ocp.args.JsonSave(json.loads(config.to_json())),
        tokenizer=ocp.args.JsonSave(tokenizer))))

  def check_saving(self):
    """SaveFailed as soon as the save in flight has failed: cheap enough to call every step (a
    flag read while it runs, one wait when it ends)."""
    if self._saving is not None and not self._manager.is_saving_in_progress():
      self.wait()

  def wait(self):
    """Blocks until the save in flight (if any) is committed; SaveFailed if it failed."""
    if self._saving is not None:   # kept until committed: sealing the step reads it
      self._guard(self._saving, self._manager.wait_until_finished)
      self._saving = None

  def close(self):
    self._manager.close()

  def _guard(self, step, action):
    """Runs a manager call that may surface a background save's failure; raises it as one
    SaveFailed naming `step`."""
    with quiet.main_thread_muted() as held:
      try:
        action()
      except SAVE_ERRORS as e:
        if held:
          held.release(show=False)
        raise self._save_failed(step, e) from e
    if held and not self._manager.is_saving_in_progress():
      held.release(show=True)

  def _save_failed(self, step, error):
    """The SaveFailed for `step`, after removing its partial files (writes still running may
    leave some: the next run's manager clears them)."""
    if jax.process_index() == 0:
      for tmp in self.directory.glob(f"*{TMP_SUFFIX}"):
        shutil.rmtree(tmp, ignore_errors=True)
    committed = [int(p.name) for p in self.directory.iterdir() if p.name.isdigit()]
    newest = max(committed, default=None)   # from disk: the manager forgot rotated steps
    return SaveFailed(
        f"saving checkpoint step {step} failed ({_write_failure(error)}); its partial files "
        f"were removed and the steps before it are intact (newest: "
        f"{newest if newest is not None else 'none'}); free space (or fix {self.directory}) "
        f"and rerun the same command to continue")

  # Reading.

  def verify(self, step):
    """Raises Unreadable if a file of the step differs from (or is missing against) the
    SHA256SUMS written with it, or it has none. Process 0 reads and checks the files and tells
    the others: the step is read once, not once per host, and every process reaches the same
    verdict (one that went on restoring while another gave up would hang the run)."""
    step_dir = self.step_dir(step)
    cause = multihost.first_process_text(
        checksums.mismatches(step_dir) if jax.process_index() == 0 else "")
    if cause:
      raise Unreadable(f"checkpoint {step_dir} does not match the checksums saved with it "
                       f"({cause})", cause)

  def saved_config(self, step):
    """The config a step was saved with (a dict), after verifying the step: this is the first
    read of a step on every path that restores one."""
    self.verify(step)
    read = lambda: self._manager.restore(
        step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    return self._read(read, step)

  def restore(self, step, abstract_state, data_iterator=None):
    """The state onto the shardings in `abstract_state` (any mesh) and, if given, the data
    iterator's position set in place; Unreadable if the step cannot be read. The position, a
    file each process reads for itself, is read first and agreed on by all."""
    error = None
    if data_iterator is not None:
      # Set now, before any collective (a later, older step sets it again).
      try:
        position.restore(data_iterator, self.step_dir(step))
      except position.UnreadablePosition as e:
        error = _unreadable(self.step_dir(step), str(e))
    error = self._agreed(error, step)
    if error:
      raise error
    read = lambda: self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]
    return self._read(read, step)

  def restore_params(self, step, abstract_params):
    """Only the params of a saved train state (no optimizer state is read), onto the shardings
    in `abstract_params`; Unreadable if the step cannot be read."""
    args = ocp.args.PyTreeRestore(
        item={"params": abstract_params},
        restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract_params)},
        partial_restore=True)
    read = lambda: ocp.PyTreeCheckpointer().restore(self.step_dir(step) / "state",
                                                    args=args)["params"]
    return self._read(read, step)

  def _agreed(self, error, step):
    """`error` (an Unreadable, or None where this process read its part) as all processes
    decide together: a step that any process could not read is unreadable for every one, with
    that process's cause. A collective, called before Orbax reads the step (its restore ends in
    one, which a process that gave up early would never join)."""
    if jax.process_count() == 1:
      return error
    mine = "" if error is None else f"process {jax.process_index()}: {error.cause}"
    failed = [text for text in multihost.every_process_text(mine) if text]
    return _unreadable(self.step_dir(step), failed[0]) if failed else None

  def _read(self, read, step):
    """read() with sys.stderr muted; any failure becomes one Unreadable naming the step (with
    several processes, only when all of them failed: see _after_failed_read)."""
    try:
      with quiet.muted_reads():
        return read()
    except Exception as e:  # noqa: BLE001 - whatever broke, this step cannot be used
      error = _unreadable(self.step_dir(step), _first_line(e, 160))
      raise self._after_failed_read(error, step) from e

  def _after_failed_read(self, error, step):
    """`error`, this process's failure inside Orbax's read of `step`, when every process failed
    too (then all give the step up together, as one process would); otherwise a ValueError that
    ends this process. Processes that read the step wait for this one in the collective that
    ends Orbax's restore, which it cannot join any more: it waits for the others' failures for
    as long as a silent peer counts as alive (multihost.vote_all_failed), and the coordination
    service stops the processes still waiting in Orbax."""
    if jax.process_count() == 1:
      return error
    wait = parallel.peer_timeout()
    all_failed, causes = multihost.vote_all_failed(f"llm/failed_restore/{step}", error.cause,
                                                   wait)
    if all_failed:   # the same cause (process 0's) on each
      return _unreadable(self.step_dir(step), f"process 0: {causes[0]}")
    others = sorted(set(range(jax.process_count())) - set(causes))
    why = (f"process {', '.join(map(str, others))} did not report failing to read it within "
           f"{wait} s" if others else "another process had already stopped over it")
    raise ValueError(
        f"checkpoint {self.step_dir(step)} could not be restored on process "
        f"{jax.process_index()} ({error.cause}), and not alike on every process: {why}; nothing "
        f"was moved or deleted. Fix what this process cannot read, or move the step aside to "
        f"resume from the one before, then rerun")

  # Resuming.

  def resume(self, config, tok, abstract_state, data_iterator, abstract_state_for):
    """(state, step) from the newest readable step, or (None, 0) if there is none. Newer
    unreadable steps are moved to checkpoints/corrupt-<step> with one warning line naming both
    steps; if no step is readable, one error (and nothing is moved). `abstract_state_for(saved
    config)`: the abstract state in a saved config's layer layout, for a step to convert."""
    unreadable = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state = self._resume_from(step, config, tok, abstract_state, data_iterator,
                                  abstract_state_for)
      except Unreadable as e:
        unreadable.append((step, e))
        continue
      if unreadable:
        self._set_aside(unreadable, step)
      return state, step
    if unreadable:
      others = [step for step, _ in unreadable[1:]]
      raise ValueError(f"{unreadable[0][1]}{f' (nor could steps {others})' if others else ''}; "
                       f"no readable checkpoint is left to resume from: move them away to start "
                       f"over, or use a new --workdir")
    return None, 0

  def _set_aside(self, unreadable, resumed):
    """Moves the unreadable steps aside (process 0) with one warning; every process stops if
    that failed, or forgets them."""
    problem = ""
    if jax.process_index() == 0:
      try:
        moved = [self.move_aside(step) for step, _ in unreadable]
        runlog.log(f"warning: checkpoint step {unreadable[0][0]} is unreadable "
                   f"({unreadable[0][1].cause}); moved {', '.join(p.name for p in moved)} "
                   f"aside and resumed from step {resumed}")
      except Exception as e:  # noqa: BLE001 - the other processes must hear of any failure
        problem = (str(e) if isinstance(e, ValueError) else
                   f"moving unreadable checkpoints aside failed ({type(e).__name__}: {e})")
    problem = multihost.first_process_text(problem)   # after the move: all stop, or go on
    if problem:
      raise ValueError(problem)
    self._manager = self._open()

  def _resume_from(self, step, config, tok, abstract_state, data_iterator, abstract_state_for):
    """The train state of one saved step, checked against the config; Unreadable if it cannot
    be read, ValueError if the config does not fit it."""
    step_dir = self.step_dir(step)
    saved = self.saved_config(step)
    if step > config.total_steps:
      raise ValueError(f"{self.directory.parent} has a checkpoint at step {step}, past "
                       f"total_steps={config.total_steps}; set --config.total_steps={step} or "
                       f"more to go on from it, or use a new --workdir")
    compatibility.check_shape(saved, config, step_dir, layout_may_differ=config.convert_layout)
    compatibility.check_tokenizer(step_dir, tok)
    changed = compatibility.changed_settings(saved, config)
    if changed and not config.allow_changed_config:
      raise ValueError(f"resuming {step_dir} with settings that change the data or the "
                       f"optimisation (checkpoint vs now: {'; '.join(changed)}); keep the saved "
                       f"values, use a new --workdir, or add --config.allow_changed_config=True")
    if changed:
      runlog.log(f"resuming with changed settings (allow_changed_config): {'; '.join(changed)}")
    scanned = bool(saved["model"].get("scan_layers"))
    if scanned == bool(config.model.scan_layers):
      state = self.restore(step, abstract_state, data_iterator)
    else:   # restore in the saved layout, then restack params and optimizer state alike
      state = self.restore(step, abstract_state_for(from_saved(saved)), data_iterator)
      state = jax.tree.map(lambda x, a: jax.device_put(x, a.sharding),
                           convert.to_layout(state, config.model.scan_layers), abstract_state)
      runlog.log(f"converted {step_dir} to model.scan_layers={config.model.scan_layers}")
    runlog.log(f"resumed from {step_dir}")
    return state

  def move_aside(self, step):
    """Renames an unreadable step to checkpoints/corrupt-<step> (kept for inspection, never read
    or rotated again); returns the new path. ValueError naming the step if it cannot be
    renamed."""
    source = self.step_dir(step)
    target = self.directory / f"corrupt-{step}"
    suffix = 1
    while target.exists():
      target, suffix = self.directory / f"corrupt-{step}.{suffix}", suffix + 1
    try:
      os.rename(source, target)
    except OSError as e:
      raise ValueError(f"checkpoint {source} is unreadable and could not be moved aside to "
                       f"{target.name} ({e.strerror or type(e).__name__}); move or delete it "
                       f"yourself, then rerun") from None
    return target
