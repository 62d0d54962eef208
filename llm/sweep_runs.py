"""Running a sweep's members (python -m llm.sweep is the command; llm/sweeps.py says what the
members are and the commands each needs): `parallel` at a time, each member's commands one after
another in its slot, a line per member as it ends, and SIGTERM or SIGINT passed on to the
members once."""
import pathlib
import signal
import subprocess
import time

from llm import sweep_results
from llm.sweeps import commands, downstream_runs, finished, run_finished, trained


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def run(spec, workdir, flags, members, parallel=1):
  """Runs the unfinished `members`, `parallel` at a time, each logging to
  <workdir>/logs/<name>.log (appended to by a rerun), and prints a line per member as it ends
  (with the ETA of the rest). Returns (the names of the members that failed, of those whose
  training a signal stopped before its last step: saved, not evaluated)."""
  workdir = pathlib.Path(workdir)
  (workdir / "logs").mkdir(parents=True, exist_ok=True)
  todo = [m for m in members if not finished(workdir, m)]
  for m in todo:   # a fine-tune would resume from its own checkpoint, not from the new run
    stale = downstream_runs(workdir, m) if not trained(workdir, m) else []
    if stale:
      raise ValueError(f"member {m.name} is not trained to its last step, but its downstream run "
                       f"{stale[0]} exists (from an earlier training); move it away to redo it")
  for done, m in enumerate((m for m in members if m not in todo), 1):
    print(f"[{done}/{len(members)}] {m.name}: finished already", flush=True)
  runs = _Runs(workdir, spec, flags, len(members), len(members) - len(todo), parallel)
  # Members run in sessions of their own, so that only the sweep receives a terminal's Ctrl-C
  # or a scheduler's SIGTERM to the job's process group; it passes the signal on once (a second
  # one would make a member exit without saving), waits for them to save, and stops.
  received = []
  previous = {sig: signal.signal(sig, lambda s, _: received.append(s))
              for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    while (todo or runs.running) and not received:
      while todo and len(runs.running) < parallel and not received:
        runs.start(todo.pop(0))
      time.sleep(0.5)
      runs.collect(waiting=len(todo))
    if received:
      runs.wait(received[0])
      raise SystemExit("stopped; the members that were running saved a checkpoint: rerun the "
                       "same command to continue")
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  return runs.failed, runs.stopped


class _Runs:
  """The member processes running now, and what the ones that ended took."""

  def __init__(self, workdir, spec, flags, total, done, parallel):
    self.workdir, self.spec, self.flags = workdir, spec, flags
    self.total, self.done, self.parallel = total, done, parallel
    self.running = {}   # {process: (member, its log, when it started, commands left)}
    self.durations, self.failed, self.stopped = [], [], []

  def log_path(self, member):
    return self.workdir / "logs" / f"{member.name}.log"

  def start(self, member, todo=None, log=None, started=None):
    """Runs the member's next command (`todo`: those left; default: all it needs)."""
    todo = commands(self.spec, self.workdir, member, self.flags) if todo is None else todo
    log = log or open(self.log_path(member), "a")   # noqa: SIM115 - closed when the member ends
    proc = subprocess.Popen(todo[0], stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    self.running[proc] = (member, log, started or time.monotonic(), todo[1:])

  def collect(self, waiting):
    """Starts each ended member's next command; prints a line for each member that is done."""
    for proc in [p for p in self.running if p.poll() is not None]:
      member, log, started, todo = self.running.pop(proc)
      # A training (the member's, or a fine-tune from it) that a signal stopped exits 0 too.
      run_dir = pathlib.Path(next(a.removeprefix("--workdir=") for a in proc.args
                                  if a.startswith("--workdir=")))
      stopped = proc.args[2] == "llm.train" and not (
          trained(self.workdir, member) if run_dir == self.workdir / member.name
          else run_finished(run_dir))
      if proc.returncode == 0 and todo and not stopped:   # its evaluations next, in its slot
        self.start(member, todo, log, started)
        continue
      log.close()
      self.done += 1
      self.durations.append(time.monotonic() - started)
      left = waiting + len(self.running)
      mean = sum(self.durations) / len(self.durations)
      eta = f"; ETA {_duration(mean * -(-left // self.parallel))}" if left else ""
      head = f"[{self.done}/{self.total}] {member.name}"
      if proc.returncode == 0 and stopped:   # a signal stopped its training: not evaluated
        self.stopped.append(member.name)
        print(f"{head}: stopped before its last step (saved; a rerun continues it){eta}",
              flush=True)
      elif proc.returncode == 0:
        scores = sweep_results.final_figures(self.workdir / member.name)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(scores.items())[:3])
        print(f"{head}: done in {_duration(self.durations[-1])}{'; ' + shown if shown else ''}"
              f"{eta}", flush=True)
      else:
        lines = self.log_path(member).read_text(errors="replace").splitlines()
        last = next((line for line in reversed(lines) if line.strip()), "")
        self.failed.append(member.name)
        print(f"{head}: failed (exit {proc.returncode}): {last} (log: {self.log_path(member)})"
              f"{eta}", flush=True)

  def wait(self, forward):
    """Sends each running member the signal `forward` and waits for them (later signals to the
    sweep are only noted: the members are saving)."""
    for proc in self.running:
      if proc.poll() is None:
        proc.send_signal(forward)
    for proc, (_, log, _, _) in self.running.items():
      proc.wait()
      log.close()
