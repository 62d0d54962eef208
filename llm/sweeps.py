"""Sweeps (python -m llm.sweep is the command): a config file's `get_sweep(arg)` lists an
experiment's members as override dicts, big_vision style (seeds are members too):

  def get_sweep(arg=None):
    return [{"nsp": nsp, "seed": seed} for nsp in (True, False) for seed in (0, 1, 2)]

Each member is one `llm.train` run of get_config(arg) with its overrides (and the sweep's own
--config.KEY=VALUE flags, which every member gets first), in <sweep workdir>/<member name>/, the
name spelled from its overrides ("nsp=False,seed=1"). The file may also name evaluations that
each member gets once trained, and what its report shows:

  def get_evaluations(arg=None):   # {name: overrides}: llm.evaluate --name=NAME, once trained
    return {"len256": {"seq_len": 256}, "len512": {"seq_len": 512},
            # "command" picks llm.generate instead, "flags" are its own: its decoding speed
            "decode": {"command": "generate", "flags": {"max_new_tokens": 64}}}

  def get_report(arg=None):   # llm.report's metric; "x": a plot of metrics against a value
    return {"metric": "eval/perplexity", "x_label": "evaluation length (tokens)",
            "x": {128: "eval/perplexity", 256: "evaluate_len256/perplexity"}}

A member whose final checkpoint and named evaluations exist is finished: a rerun of the sweep
skips it and continues the others where they stopped.
"""
import dataclasses
import hashlib
import json
import pathlib
import re
import signal
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
  evaluations: dict = dataclasses.field(default_factory=dict)   # get_evaluations'


def member_name(overrides):
  """'key=value,...' in get_sweep's order, safe as a directory name ("base" for no overrides);
  a long one keeps its first 80 characters and a hash of the whole."""
  name = ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"
  name = _NAME_CHARS.sub("_", name)
  if len(name) > 120:
    name = f"{name[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
  return name


def _call(path, namespace, function, arg):
  try:
    return namespace[function](*([arg] if arg else []))
  except Exception as e:  # noqa: BLE001 - whatever the user's code raised, name it in one line
    call = f"{function}({arg!r})" if arg else f"{function}()"
    first = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(f"{call} in {path} raised {type(e).__name__}: {first}") from None


def sweep_overrides(path, arg):
  """get_sweep(arg) of the config file at `path`: a list of override dicts, checked for shape."""
  path = pathlib.Path(path)
  namespace = cli.config_namespace(cli.compiled(path), path)
  if not callable(namespace.get("get_sweep")):
    raise ValueError(f"config file {path} defines no get_sweep(); a sweep is `def "
                     f"get_sweep(arg=None): return [{{'seed': 0}}, {{'seed': 1}}, ...]`, one dict "
                     f"of config overrides per member")
  members = _call(path, namespace, "get_sweep", arg)
  if not isinstance(members, (list, tuple)) or not members:
    raise ValueError(f"get_sweep() in {path} returned {members!r}; it returns a non-empty list "
                     f"of override dicts, one per member")
  for i, member in enumerate(members):
    if not isinstance(member, dict):
      raise ValueError(f"get_sweep() in {path}: member {i} is {member!r}, not a dict of config "
                       f"overrides")
  return [dict(m) for m in members]


REPORT_KEYS = ("metric", "x", "x_label", "fits")


# An evaluation's keys that are not config overrides: which command runs it, and its own flags.
COMMANDS = ("evaluate", "generate")


def _evaluation_ok(name, entry):
  return (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
          and isinstance(entry, dict) and entry.get("command", "evaluate") in COMMANDS
          and isinstance(entry.get("flags", {}), dict))


def split_evaluation(entry):
  """(command, its flags, the config overrides) of a get_evaluations entry."""
  overrides = {k: v for k, v in entry.items() if k not in ("command", "flags")}
  return entry.get("command", "evaluate"), dict(entry.get("flags", {})), overrides


def sweep_settings(path, arg):
  """(get_evaluations(arg), get_report(arg)) of the config file at `path`, each {} when the file
  does not define it, checked for shape."""
  path = pathlib.Path(path)
  namespace = cli.config_namespace(cli.compiled(path), path)
  evaluations, report = {}, {}
  if callable(namespace.get("get_evaluations")):
    evaluations = _call(path, namespace, "get_evaluations", arg)
    if not isinstance(evaluations, dict) or not all(
        _evaluation_ok(n, e) for n, e in evaluations.items()):
      raise ValueError(f"get_evaluations() in {path} returned {evaluations!r}; it returns "
                       f"{{name: overrides}}, names of letters, digits and . _ - (they become "
                       f"evaluate_<name>.json), e.g. {{'len256': {{'seq_len': 256}}}}; an "
                       f"entry's 'command' is one of {list(COMMANDS)}, its 'flags' a dict")
  if callable(namespace.get("get_report")):
    report = _call(path, namespace, "get_report", arg)
    fits = report.get("fits", []) if isinstance(report, dict) else None
    if not isinstance(report, dict) or set(report) - set(REPORT_KEYS) or not isinstance(
        report.get("x", {}), dict) or not isinstance(fits, list) or not all(
            isinstance(f, dict) and {"x", "y", "by"} <= set(f) for f in fits):
      raise ValueError(f"get_report() in {path} returned {report!r}; it returns a dict of "
                       f"{list(REPORT_KEYS)} (x: {{value: metric}}; fits: [{{x, y, by, ...}}])")
  return evaluations, report


def plan(listed, base, only=None, evaluations=None):
  """The members of `listed` (sweep_overrides'), none the same or sharing a directory, and each
  (or member `only` alone, which is then all the list holds) checked as its run would be, and
  as each of its `evaluations` (sweep_settings') would be: every key known and settable from
  the command line, the values of the right type and inside their ranges. A ValueError names
  the first problem, before anything runs. `base`: get_config(arg)
  with the sweep's own --config.KEY=VALUE flags, which every member gets before its overrides. The
  checks that need the members' devices are left to their runs: this process never starts a
  JAX backend (on a TPU host it would hold the chips its members need)."""
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
    config = _checked(base, overrides, f"member {i} ({name})")
    for evaluation, entry in (evaluations or {}).items():
      _checked(config, split_evaluation(entry)[2], f"member {i} ({name}), evaluation {evaluation}")
    members.append(Member(i, name, overrides, config.total_steps, dict(evaluations or {})))
  return members


def _checked(base, overrides, where):
  """`base` with `overrides`, resolved as a run would; ValueError naming `where` and the problem."""
  from llm import config_checks
  config = base.copy_and_resolve_references()
  for key, value in overrides.items():
    problem = cli.override_problem(config, key)
    if not problem and (value is None or isinstance(value, (dict, list, tuple))):
      problem = (f"{key}={value!r} is a {type(value).__name__}, which a member cannot pass to "
                 f"llm.train or llm.evaluate; set it in get_config")
    if problem:
      raise ValueError(f"{where}: {problem}")
  try:
    config.update_from_flattened_dict(overrides)
    config_checks.resolve_config(config, None)
  except (ValueError, TypeError, KeyError, OSError) as e:
    raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
  return config


def train_command(spec, workdir, member, flags):
  """The llm.train command line of `member` (spec: the sweep's --config value; flags: its own
  --config.KEY=VALUE flags, before the member's)."""
  return [sys.executable, "-m", "llm.train", f"--config={spec}",
          f"--workdir={pathlib.Path(workdir) / member.name}", *flags,
          *(f"--config.{k}={v}" for k, v in member.overrides.items())]


def evaluate_command(spec, workdir, member, flags, name):
  """The command line of the member's evaluation `name` (llm.evaluate, or the command it names):
  the member's config and the evaluation's overrides, its result in <command>_<name>.json."""
  command, own_flags, overrides = split_evaluation(member.evaluations[name])
  return [sys.executable, "-m", f"llm.{command}", f"--config={spec}",
          f"--workdir={pathlib.Path(workdir) / member.name}", *flags,
          *(f"--config.{k}={v}" for k, v in {**member.overrides, **overrides}.items()),
          *(f"--{k}={v}" for k, v in own_flags.items()), f"--name={name}"]


def result_file(workdir, member, name):
  """Where the member's evaluation `name` writes its result."""
  command = split_evaluation(member.evaluations[name])[0]
  return pathlib.Path(workdir) / member.name / f"{command}_{name}.json"


def trained(workdir, member):
  """Whether the member's run saved its final step (its checkpoint directory is committed)."""
  return (pathlib.Path(workdir) / member.name / "checkpoints" / str(member.total_steps)).is_dir()


def commands(spec, workdir, member, flags):
  """The commands the member still needs, in order: its training and then every evaluation
  while it is not trained (a file written before, of an earlier step, is redone), else each
  evaluation whose file does not exist yet."""
  if not trained(workdir, member):
    return [train_command(spec, workdir, member, flags)] + [
        evaluate_command(spec, workdir, member, flags, name) for name in member.evaluations]
  return [evaluate_command(spec, workdir, member, flags, name) for name in member.evaluations
          if not result_file(workdir, member, name).is_file()]


def finished(workdir, member):
  """Whether the member is trained and has every evaluation it names."""
  return not commands("", workdir, member, [])


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def write_plan(workdir, spec, flags, listed, evaluations=None, report=None):
  """<workdir>/sweep.json: the command's config and flags, every member of the sweep (`listed`),
  the evaluations each gets and the report's settings (what llm.report reads), the same
  whichever members this process runs."""
  (pathlib.Path(workdir) / "sweep.json").write_text(json.dumps(
      {"config": spec, "flags": list(flags),
       "members": [{"name": member_name(o), "overrides": o} for o in listed],
       "evaluations": evaluations or {},
       "report": {k: ({str(x): m for x, m in v.items()} if k == "x" else v)
                  for k, v in (report or {}).items()}}, indent=2))


def run(spec, workdir, flags, members, parallel=1):
  """Runs the unfinished `members`, `parallel` at a time, each logging to
  <workdir>/logs/<name>.log (appended to by a rerun), and prints a line per member as it ends
  (with the ETA of the rest). Returns (the names of the members that failed, of those whose
  training a signal stopped before its last step: saved, not evaluated)."""
  workdir = pathlib.Path(workdir)
  (workdir / "logs").mkdir(parents=True, exist_ok=True)
  todo = [m for m in members if not finished(workdir, m)]
  for done, m in enumerate((m for m in members if m not in todo), 1):
    print(f"[{done}/{len(members)}] {m.name}: finished already", flush=True)
  runs = _Runs(workdir, spec, flags, len(members), len(members) - len(todo), parallel)
  # SIGTERM (a scheduler's, or kill) is passed on to the members; Ctrl-C's SIGINT reaches them
  # from the terminal. Either way each saves, then stops, and so does the sweep.
  previous = signal.signal(signal.SIGTERM, _interrupt)
  try:
    while todo or runs.running:
      while todo and len(runs.running) < parallel:
        runs.start(todo.pop(0))
      time.sleep(0.5)
      runs.collect(waiting=len(todo))
  except (KeyboardInterrupt, _Terminated) as e:
    runs.wait(signal.SIGTERM if isinstance(e, _Terminated) else None)
    raise SystemExit("stopped; the members that were running saved a checkpoint: rerun the same "
                     "command to continue") from None
  finally:
    signal.signal(signal.SIGTERM, previous)
  return runs.failed, runs.stopped


class _Terminated(Exception):
  """The sweep received SIGTERM."""


def _interrupt(sig, frame):
  del sig, frame
  raise _Terminated()


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
    proc = subprocess.Popen(todo[0], stdout=log, stderr=subprocess.STDOUT, text=True)
    self.running[proc] = (member, log, started or time.monotonic(), todo[1:])

  def collect(self, waiting):
    """Starts each ended member's next command; prints a line for each member that is done."""
    for proc in [p for p in self.running if p.poll() is not None]:
      member, log, started, todo = self.running.pop(proc)
      stopped = proc.args[2] == "llm.train" and not trained(self.workdir, member)
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
        print(f"{head}: stopped before total_steps={member.total_steps} (saved; a rerun "
              f"continues it){eta}", flush=True)
      elif proc.returncode == 0:
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

  def wait(self, forward=None):
    """Waits for the running members (after sending each the signal `forward`, if given)."""
    for proc in self.running:
      if forward is not None:
        proc.send_signal(forward)
    for proc, (_, log, _, _) in self.running.items():
      proc.wait()
      log.close()
