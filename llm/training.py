"""One training run, read top to bottom: config -> mesh -> data -> model and state -> resume ->
loop -> final evaluation; a rerun on the same workdir resumes it. The command is train.py; the
steps are in steps.py, evaluation in evaluation.py, checkpoints in checkpoint.py.
"""
import shutil
import sys
import time

import jax
import numpy as np
import tqdm

from llm import checkpoint, cli, compatibility, config_checks, lock, optim, parallel, preemption
from llm import quiet, runlog, state as state_lib, tasks, transfer
from llm.data import batching, corpora, mixture, tokenizer as tokenizer_lib
from llm.evaluation import evaluate, make_decoder
from llm.models import build_model
from llm.steps import jit_eval_step, jit_train_step, put_batch


def train_and_evaluate(config, workdir):
  """Runs (or resumes) training and returns the final validation metrics."""
  # Resolved once: e.g. a pretrained start fixes the model's shape.
  config_checks.resolve_config(config, jax.device_count())
  workdir = cli.workdir_path(workdir)
  # Process 0 holds the workdir for the whole run (others share its file system).
  held = lock.acquire(workdir) if jax.process_index() == 0 else None
  try:
    return _train(config, workdir)
  finally:
    if held:
      held.close()


def _train(config, workdir):
  if config.optimizer.warmup_steps >= config.total_steps:
    runlog.log(f"warning: optimizer.warmup_steps={config.optimizer.warmup_steps} >= total_steps="
               f"{config.total_steps}: the whole run is warmup, the learning rate never reaches "
               f"{config.optimizer.learning_rate}")
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.axis_rules(config)

  # Data: the corpus is built and the tokenizer trained on first use, then cached.
  task = tasks.get_task(config.objective)
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  if isinstance(builder, mixture.Mixture) and jax.process_index() == 0:
    mixture.describe(builder, tok, config, corpora.data_dir(config))
  train_iter = _train_iterator(config, task, tok, builder, mesh, rules)
  eval_batches = batching.eval_batches(
      config, task, tok, builder,
      rows=parallel.process_rows(mesh, rules, batching.eval_batch_size(config)))

  model = build_model(config, task.heads(config))
  optimizer, schedule = optim.make_optimizer(config)
  abstract_state, shardings = state_lib.state_shardings(model, optimizer, config, mesh)

  # State: the newest readable checkpoint, else a fresh (or pretrained) start.
  checkpoints = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
  # A step saved with the other layer layout is read in its own, then converted.
  saved_layout = lambda saved: state_lib.state_shardings(
      build_model(saved, task.heads(config)), optimizer, saved, mesh)[0]
  state, start = checkpoints.resume(config, tok, abstract_state, train_iter, saved_layout)
  if state is None:
    state, start = state_lib.init_state(model, optimizer, config, shardings), 0
    if config.init:
      state["params"] = transfer.load_pretrained(config, state["params"], mesh)
  finished = start == config.total_steps   # a rerun of a finished run: nothing left to train
  if jax.process_index() == 0 and not finished:
    _write_run_files(config, workdir, start, tok)
  num_eval = sum(map(len, eval_batches.values())) if isinstance(eval_batches, dict) else len(
      eval_batches)
  runlog.log(f"model: {state_lib.count_params(state['params']):,} parameters; mesh "
             f"{dict(mesh.shape)}; {num_eval} validation batch{'es' * (num_eval != 1)}; "
             + state_lib.describe_trainable(state, config))

  train_step = jit_train_step(model, task, optimizer, schedule, config, mesh, shardings)
  eval_step = jit_eval_step(model, task, config, mesh, shardings["params"])
  validation = tasks.eval_set(task, builder, "validation", config, tok)
  decode = make_decoder(model, config, tok, mesh, rules) if task.prompts else None
  run_eval = lambda params: evaluate(eval_step, params, eval_batches, mesh, rules, task,
                                     validation, decode)[0]
  if finished:
    runlog.log(f"{workdir} is already trained to total_steps={config.total_steps}; evaluating "
               f"its final checkpoint again (a larger --config.total_steps trains on)")
    return run_eval(state["params"])
  return _loop(config, workdir, task, state, start, train_step, run_eval, train_iter,
               checkpoints, compatibility.tokenizer_record(tok), mesh, rules,
               state_lib.parameter_counts(state["params"]))


def _train_iterator(config, task, tok, builder, mesh, rules):
  """The training batches' iterator, building the input shards that hold this process's rows."""
  rows = parallel.process_rows(mesh, rules, config.batch_size)
  train_iter = batching.train_iterator(config, task, tok, builder, rows)
  built = (len(batching.shards_of(config.input_shards, config.batch_size, rows))
           * config.batch_size // config.input_shards)
  if built > len(rows):
    runlog.log(f"note: with input_shards={config.input_shards} this process builds {built} "
               f"rows of every batch of {config.batch_size} and trains on {len(rows)}; a "
               f"multiple of the process count builds only its own rows (a new run)")
  return train_iter


def _write_run_files(config, workdir, start, tok):
  """The resolved config (the first run's stays config.json; each resume's goes next to it) and
  the SentencePiece model, which makes the workdir a complete init source."""
  first = start == 0 or not (workdir / "config.json").exists()
  name = "config.json" if first else f"config.resume-{start}.json"
  (workdir / name).write_text(config.to_json(indent=2))
  if config.tokenizer.kind == "sentencepiece":
    shutil.copyfile(tok.path, workdir / "tokenizer.model")


def _loop(config, workdir, task, state, start, train_step, run_eval, train_iter, checkpoints,
          tokenizer, mesh, rules, sizes):
  """Steps start + 1 .. total_steps, logging, evaluating and saving as the config says; stops
  early (saved) at stop_at_step or on SIGTERM/SIGINT. The first metrics line also holds the
  model's `sizes` (state.parameter_counts). Returns the last validation metrics ({}
  when interrupted)."""
  writer = runlog.MetricWriter(workdir, resume_step=start)
  interval, guard = _Interval(), _NonfiniteGuard(config, checkpoints)
  result, stopping = None, False
  interrupted = preemption.Watch()   # from here on, SIGTERM/SIGINT save and stop
  held = quiet.hold_background_stderr()
  # On the stream sys.stderr is from now on, so that tqdm.write (runlog.log) finds the bar and
  # clears it around each log line instead of writing into it.
  bar = tqdm.tqdm(total=config.total_steps, initial=start, disable=not sys.stderr.isatty()
                  or jax.process_index() != 0, dynamic_ncols=True, file=sys.stderr)
  try:
    for step in range(start + 1, config.total_steps + 1):
      state, stats, sums = train_step(state, put_batch(next(train_iter), mesh, rules))
      interval.add(stats, sums)
      guard.add(step, stats["finite"])
      checkpoints.check_saving()   # a failed save stops the run at once
      bar.update(1)
      last = step == config.total_steps
      signalled = interrupted.reached(step)   # all processes agree on the step
      stopping = step == config.stop_at_step or signalled
      saving = ((config.checkpoint_every and step % config.checkpoint_every == 0) or last
                or stopping)
      logging_now = (config.log_every and step % config.log_every == 0) or last
      if saving or logging_now:
        guard.check()
      # Everything logged at this step goes into one metrics.jsonl line.
      record = interval.record(step, stats, guard.skipped, task, bar) if logging_now else {}
      if (config.eval_every and step % config.eval_every == 0) or last:
        result = run_eval(state["params"])
        record.update({f"eval/{k}": v for k, v in result.items()})
        runlog.log(f"step {step}: " + ", ".join(f"eval/{k} {v:.4f}" for k, v in result.items()))
      if record:
        writer.write(step, {**record, **sizes})
        sizes = {}
      if saving:
        checkpoints.save(step, state, train_iter, config, tokenizer)
      if stopping:
        why = interrupted.name if signalled else "stop_at_step"
        runlog.log(f"stopped after step {step} ({why})")
        break
      if "train/loss" in record:
        interval.restart_clock()
    bar.close()
    if result is None and not interrupted.name:   # stopped early (stop_at_step)
      result = run_eval(state["params"])
    checkpoints.wait()
    if stopping:
      runlog.log(f"saved step {checkpoints.latest_step()}; rerun the same command to continue")
    return result or {}
  finally:
    try:   # whatever ends the run, the save in flight is committed first
      checkpoints.wait()
    except checkpoint.SaveFailed:   # already reported, or reported by the error ending the run
      pass
    writer.close()
    held.close()
    interrupted.close()


class _Interval:
  """The steps since the last log line: their token counts and metric sums, added up on the host
  in float64 (adding device arrays step by step would dispatch an op per metric and step), and
  when the interval's clock started. The newest steps' figures stay on the device until the log
  line; older ones are fetched and added in batches, so a long interval (log_every=0) holds at
  most 2 x HELD steps' arrays and never waits for a step in flight."""
  HELD = 64

  def __init__(self):
    self.tick = time.perf_counter()
    self._clear()

  def _clear(self):
    self.steps, self.tokens, self.totals = 0, 0, None
    self.token_counts, self.sums = [], []   # per step, on the device

  def restart_clock(self):
    self.tick = time.perf_counter()

  def add(self, stats, sums):
    self.steps += 1
    self.token_counts.append(stats["tokens"])
    self.sums.append(sums)
    if len(self.sums) >= 2 * self.HELD:
      self._fold(len(self.sums) - self.HELD)

  def _fold(self, count):
    """Adds the oldest `count` steps' figures into the host totals."""
    tokens, sums = jax.device_get((self.token_counts[:count], self.sums[:count]))
    self.tokens += int(np.sum(tokens))
    summed = jax.tree.map(lambda *steps: np.sum(np.asarray(steps, np.float64), axis=0), *sums)
    self.totals = summed if self.totals is None else jax.tree.map(np.add, self.totals, summed)
    del self.token_counts[:count], self.sums[:count]

  def record(self, step, stats, skipped, task, bar):
    """The train/ metrics of the interval ending at `step` (loss, perplexity and accuracy over
    the interval; gradient norm and learning rate of this step), logged; clears the counts and
    sums (the clock restarts once a loss was shown: restart_clock)."""
    stats = jax.device_get(stats)
    elapsed = time.perf_counter() - self.tick
    self._fold(len(self.sums))
    tokens = self.tokens
    record = {f"train/{k}": v for k, v in task.summarize(self.totals).items()}
    record.update({"train/grad_norm": stats["grad_norm"],
                   "train/learning_rate": stats["learning_rate"],
                   "train/tokens_per_sec": tokens / elapsed})
    if skipped:
      record["train/skipped_steps"] = len(skipped)
    interval = range(step - self.steps + 1, step + 1)
    if set(interval) <= set(skipped):
      # No step since the last log was applied: there is no loss to show, only the count.
      record = {k: record[k] for k in ("train/skipped_steps", "train/learning_rate")}
      runlog.log(f"step {step}: skipped (non-finite), as every step since the last log")
    else:
      bar.set_postfix(loss=f"{record['train/loss']:.3f}")
      runlog.log(f"step {step}: loss {record['train/loss']:.4f}, "
                 f"{tokens / elapsed:,.0f} tokens/s")
    self._clear()
    return record


class _NonfiniteGuard:
  """The steps' device-side "finite" flags, read only at log and save points (a host sync);
  a non-finite step was not applied, and the run stops or goes on as config.on_nonfinite says."""

  def __init__(self, config, checkpoints):
    self.config, self.checkpoints = config, checkpoints
    self.unchecked, self.skipped = [], []   # (step, flag) not yet read; skipped steps

  def add(self, step, finite):
    self.unchecked.append((step, finite))

  def check(self):
    config = self.config
    bad = [s for s, ok in jax.device_get(self.unchecked) if not ok]
    self.unchecked.clear()
    if not bad:
      return
    self.skipped.extend(bad)
    where = f"step {bad[0]}" + (f" (and {len(bad) - 1} more up to step {bad[-1]})"
                                if len(bad) > 1 else "")
    if config.on_nonfinite == "stop" or len(self.skipped) > config.max_nonfinite_skips:
      self.checkpoints.wait()
      newest = self.checkpoints.latest_step()
      why = ("" if config.on_nonfinite == "stop" else
             f" {len(self.skipped)} non-finite steps exceed max_nonfinite_skips="
             f"{config.max_nonfinite_skips};")
      raise ValueError(
          f"the loss or gradient norm is not finite at {where}; not applied.{why} Stopped "
          f"without saving; newest checkpoint: {newest if newest is not None else 'none'}. "
          f"Lower optimizer.learning_rate, or set --config.on_nonfinite=skip to skip such steps")
    runlog.log(f"skipped the update of {where}: non-finite loss or gradient norm "
               f"({len(self.skipped)} skipped of at most {config.max_nonfinite_skips})")
