"""Sweeps (python -m llm.sweep is the command): a config file's `get_sweep(arg)` lists an
experiment's members as override dicts, big_vision style (seeds are members too):

  def get_sweep(arg=None):
    return [{"nsp": nsp, "seed": seed} for nsp in (True, False) for seed in (0, 1, 2)]

Each member is one `llm.train` run of get_config(arg) with its overrides (and the sweep's own
--config.KEY=VALUE flags, which every member gets first), in <sweep workdir>/<member name>/, the
name spelled from its overrides ("nsp=False,seed=1"). A member whose final checkpoint exists is
finished: a rerun of the sweep skips it and continues the others where they stopped.
"""
import dataclasses
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import time

from llm import cli, reports

# A member's directory name keeps these characters of "key=value,..." and replaces the others.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._,=+-]")


@dataclasses.dataclass(frozen=True)
class Member:
  index: int          # its place in get_sweep's list, from 0
  name: str           # its directory under the sweep workdir
  overrides: dict     # {"key": value} as get_sweep gave them
  total_steps: int    # of its resolved config: the step whose checkpoint means finished


def member_name(overrides):
  """'key=value,...' in get_sweep's order, safe as a directory name ("base" for no overrides);
  a long one keeps its first 80 characters and a hash of the whole."""
  name = ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"
  name = _NAME_CHARS.sub("_", name)
  if len(name) > 120:
    name = f"{name[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
  return name


def sweep_overrides(path, arg):
  """get_sweep(arg) of the config file at `path`: a list of override dicts, checked for shape."""
  path = pathlib.Path(path)
  namespace = cli.config_namespace(cli.compiled(path), path)
  if not callable(namespace.get("get_sweep")):
    raise ValueError(f"config file {path} defines no get_sweep(); a sweep is `def "
                     f"get_sweep(arg=None): return [{{'seed': 0}}, {{'seed': 1}}, ...]`, one dict "
                     f"of config overrides per member")
  try:
    members = namespace["get_sweep"](*([arg] if arg else []))
  except Exception as e:  # noqa: BLE001 - whatever the user's code raised, name it in one line
    call = f"get_sweep({arg!r})" if arg else "get_sweep()"
    first = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(f"{call} in {path} raised {type(e).__name__}: {first}") from None
  if not isinstance(members, (list, tuple)) or not members:
    raise ValueError(f"get_sweep() in {path} returned {members!r}; it returns a non-empty list "
                     f"of override dicts, one per member")
  for i, member in enumerate(members):
    if not isinstance(member, dict):
      raise ValueError(f"get_sweep() in {path}: member {i} is {member!r}, not a dict of config "
                       f"overrides")
  return [dict(m) for m in members]


def plan(listed, base, only=None):
  """The members of `listed` (sweep_overrides'), none the same or sharing a directory, and each
  (or member `only` alone, which is then all the list holds) checked as its run would be: every
  key known and settable from the command line, the values of the right type and inside their
  ranges. A ValueError names the first problem, before anything runs. `base`: get_config(arg)
  with the sweep's own --config.KEY=VALUE flags, which every member gets before its overrides. The
  checks that need the members' devices are left to their runs: this process never starts a
  JAX backend (on a TPU host it would hold the chips its members need)."""
  from llm import config_checks   # JAX: only once a sweep is planned
  by_name, by_items = {}, {}
  if only is not None and not 0 <= only < len(listed):
    raise ValueError(f"--member={only}: the sweep has members 0 to {len(listed) - 1}")
  for i, overrides in enumerate(listed):
    name = member_name(overrides)
    items = tuple(sorted((k, repr(v)) for k, v in overrides.items()))
    if items in by_items:
      raise ValueError(f"member {i} ({name}) repeats member {by_items[items]}: every member "
                       f"needs its own overrides (add a seed to run one twice)")
    if name in by_name:
      raise ValueError(f"member {i} ({name}) would share the directory {name} with member "
                       f"{by_name[name]}; make their overrides differ in letters, digits or "
                       f". , = + -")
    by_items[items], by_name[name] = i, i
  members = []
  for i, overrides in enumerate(listed):
    if only is not None and i != only:
      continue
    name = member_name(overrides)
    where = f"member {i} ({name})"
    config = base.copy_and_resolve_references()
    for key, value in overrides.items():
      problem = cli.override_problem(config, key)
      if not problem and (value is None or isinstance(value, (dict, list, tuple))):
        problem = (f"{key}={value!r} is a {type(value).__name__}, which a member cannot pass to "
                   f"llm.train; set it in get_config")
      if problem:
        raise ValueError(f"{where}: {problem}")
    try:
      config.update_from_flattened_dict(overrides)
      config_checks.resolve_config(config, None)
    except (ValueError, TypeError, KeyError, OSError) as e:
      raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
    members.append(Member(i, name, overrides, config.total_steps))
  return members


def train_command(spec, workdir, member, flags):
  """The llm.train command line of `member` (spec: the sweep's --config value; flags: its own
  --config.KEY=VALUE flags, before the member's)."""
  return [sys.executable, "-m", "llm.train", f"--config={spec}",
          f"--workdir={pathlib.Path(workdir) / member.name}", *flags,
          *(f"--config.{k}={v}" for k, v in member.overrides.items())]


def finished(workdir, member):
  """Whether the member's run saved its final step (its checkpoint directory is committed)."""
  return (pathlib.Path(workdir) / member.name / "checkpoints" / str(member.total_steps)).is_dir()


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def write_plan(workdir, spec, flags, listed):
  """<workdir>/sweep.json: the command's config and flags and every member of the sweep (`listed`,
  what llm.report reads), the same whichever members this process runs."""
  (pathlib.Path(workdir) / "sweep.json").write_text(json.dumps(
      {"config": spec, "flags": list(flags),
       "members": [{"name": member_name(o), "overrides": o} for o in listed]}, indent=2))


def run(spec, workdir, flags, members, parallel=1):
  """Runs the unfinished `members`, `parallel` at a time, each logging to
  <workdir>/logs/<name>.log (appended to by a rerun), and prints a line per member as it ends
  (with the ETA of the rest). Returns the names of the members that failed."""
  workdir = pathlib.Path(workdir)
  (workdir / "logs").mkdir(parents=True, exist_ok=True)
  todo = [m for m in members if not finished(workdir, m)]
  for done, m in enumerate((m for m in members if m not in todo), 1):
    print(f"[{done}/{len(members)}] {m.name}: finished already", flush=True)
  runs = _Runs(workdir, spec, flags, len(members), len(members) - len(todo), parallel)
  try:
    while todo or runs.running:
      while todo and len(runs.running) < parallel:
        runs.start(todo.pop(0))
      time.sleep(0.5)
      runs.collect(waiting=len(todo))
  except KeyboardInterrupt:   # Ctrl-C reached the members too: each saves, then stops
    runs.wait()
    raise SystemExit("stopped; the members that were running saved a checkpoint: rerun the same "
                     "command to continue") from None
  return runs.failed


class _Runs:
  """The member processes running now, and what the ones that ended took."""

  def __init__(self, workdir, spec, flags, total, done, parallel):
    self.workdir, self.spec, self.flags = workdir, spec, flags
    self.total, self.done, self.parallel = total, done, parallel
    self.running = {}   # {process: (member, its log file, when it started)}
    self.durations, self.failed = [], []

  def log_path(self, member):
    return self.workdir / "logs" / f"{member.name}.log"

  def start(self, member):
    log = open(self.log_path(member), "a")   # noqa: SIM115 - closed when the member ends
    proc = subprocess.Popen(train_command(self.spec, self.workdir, member, self.flags),
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    self.running[proc] = (member, log, time.monotonic())

  def collect(self, waiting):
    """Prints a line for each member that ended since the last call."""
    for proc in [p for p in self.running if p.poll() is not None]:
      member, log, started = self.running.pop(proc)
      log.close()
      self.done += 1
      self.durations.append(time.monotonic() - started)
      left = waiting + len(self.running)
      mean = sum(self.durations) / len(self.durations)
      eta = f"; ETA {_duration(mean * -(-left // self.parallel))}" if left else ""
      head = f"[{self.done}/{self.total}] {member.name}"
      if proc.returncode == 0:
        scores = reports.final_figures(self.workdir / member.name)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(scores.items())[:3])
        print(f"{head}: done in {_duration(self.durations[-1])}{'; ' + shown if shown else ''}"
              f"{eta}", flush=True)
      else:
        lines = self.log_path(member).read_text(errors="replace").splitlines()
        last = next((line for line in reversed(lines) if line.strip()), "")
        self.failed.append(member.name)
        print(f"{head}: failed (exit {proc.returncode}): {last} (log: {self.log_path(member)})"
              f"{eta}", flush=True)

  def wait(self):
    for proc, (_, log, _) in self.running.items():
      proc.wait()
      log.close()
