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
            "decode": {"command": "generate", "flags": {"max_new_tokens": 64}},
            # a downstream fine-tune from the member into <member>/topic/, scored on test
            "topic": {"command": "train", "config": "configs/finetune_topic.py",
                      "split": "test", "total_steps": 200}}

  def get_report(arg=None):   # llm.report's metric; "x": a plot of metrics against a value
    return {"metric": "eval/perplexity", "x_label": "evaluation length (tokens)",
            "x": {128: "eval/perplexity", 256: "evaluate_len256/perplexity"}}
    # or "along": "train_examples" (and "log_x": True): the metric against that swept key,
    # one line per setting of the others

A member whose final checkpoint and named evaluations exist is finished: a rerun of the sweep
skips it and continues the others where they stopped (llm/sweep_runs.py runs them).
"""
import dataclasses
import hashlib
import json
import pathlib
import re
import sys

from llm import cli
from llm.sweep_results import latest_config

# A member's directory name keeps these characters of "key=value,..." and replaces the others.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._,=+-]")


@dataclasses.dataclass(frozen=True)
class Member:
  index: int          # its place in get_sweep's list, from 0
  name: str           # its directory under the sweep workdir
  overrides: dict     # {"key": value} as get_sweep gave them
  total_steps: int    # of its resolved config: the step whose checkpoint means finished
  # {name: Evaluation} of get_evaluations' entries
  evaluations: dict = dataclasses.field(default_factory=dict)


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


REPORT_KEYS = ("metric", "x", "x_label", "fits", "along", "log_x")


# What an evaluation entry may hold besides config overrides: the command that runs it, its own
# flags, and for a downstream fine-tune ("train"), its config file and the split it is scored on.
COMMANDS = ("evaluate", "generate", "train")
ENTRY_KEYS = ("command", "flags", "config", "split")


@dataclasses.dataclass(frozen=True)
class Evaluation:
  command: str        # evaluate | generate | train (a fine-tune from the member, then scored)
  flags: dict         # the command's own flags
  overrides: dict     # config overrides: of the member's config, or of `config` for train
  config: str = ""    # train: the downstream config file[:arg]
  split: str = "validation"   # train: the split its fine-tuned model is scored on


# Names an evaluation cannot take: what a run keeps in its workdir (a fine-tune's directory) and
# the splits (llm.evaluate --split=test writes evaluate_test.json).
RESERVED_NAMES = (*cli.WORKDIR_ENTRIES, "logs", "train", "validation", "test")


def _evaluation_ok(name, entry):
  train = isinstance(entry, dict) and entry.get("command") == "train"
  return (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
          and name not in RESERVED_NAMES
          and isinstance(entry, dict) and entry.get("command", "evaluate") in COMMANDS
          and isinstance(entry.get("flags", {}), dict)
          and train == bool(entry.get("config")) and (train or "split" not in entry))


def split_evaluation(entry):
  """The Evaluation a get_evaluations entry describes."""
  return Evaluation(entry.get("command", "evaluate"), dict(entry.get("flags", {})),
                    {k: v for k, v in entry.items() if k not in ENTRY_KEYS},
                    entry.get("config", ""), entry.get("split", "validation"))


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
                       f"entry's 'command' is one of {list(COMMANDS)}, its 'flags' a dict, and "
                       f"'train' (a downstream fine-tune) names its 'config' file (and alone "
                       f"takes a 'split'); names other than {list(RESERVED_NAMES)}")
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
  parsed = {name: split_evaluation(entry) for name, entry in (evaluations or {}).items()}
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
    for evaluation, e in parsed.items():
      where = f"member {i} ({name}), evaluation {evaluation}"
      if e.command == "train":   # its own config; the init (the member's run) does not exist yet
        downstream_path, _, downstream_arg = e.config.partition(":")
        try:
          downstream = cli.load_config(downstream_path, downstream_arg or None)
        except (ValueError, OSError) as error:
          raise ValueError(f"{where}: {error.args[0] if error.args else error}") from None
        _checked(downstream, e.overrides, where)
      else:
        _checked(config, e.overrides, where)
    members.append(Member(i, name, overrides, config.total_steps, parsed))
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
    if not problem:
      problem = _type_problem(config, key, value)
    if problem:
      raise ValueError(f"{where}: {problem}")
  try:
    config.update_from_flattened_dict(overrides)
    config_checks.resolve_config(config, None)
  except (ValueError, TypeError, KeyError, OSError) as e:
    raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
  return config


def _type_problem(config, key, value):
  """'KEY=VALUE is text; the config holds a whole number (1)' where a member's value has another
  type than the config's (an int where a float is, the command line's way, is fine), else None."""
  current = config
  for part in key.split("."):
    if not hasattr(current, "get") or part not in current:
      return None   # a new key of an open dict (mixture.weights.<corpus>)
    current = current[part]
  kind = type(current)
  fits = (isinstance(value, kind) and (kind is bool) == isinstance(value, bool)) or (
      kind is float and isinstance(value, int) and not isinstance(value, bool))
  if current is None or hasattr(current, "items") or fits:
    return None
  words = {bool: "True or False", int: "a whole number", float: "a number", str: "text"}
  said = lambda t: words.get(t, f"a {t.__name__}")
  return f"{key}={value!r} is {said(type(value))}; the config holds {said(kind)} ({current!r})"


def train_command(spec, workdir, member, flags):
  """The llm.train command line of `member` (spec: the sweep's --config value; flags: its own
  --config.KEY=VALUE flags, before the member's)."""
  return [sys.executable, "-m", "llm.train", f"--config={spec}",
          f"--workdir={pathlib.Path(workdir) / member.name}", *flags,
          *(f"--config.{k}={v}" for k, v in member.overrides.items())]


def evaluation_commands(spec, workdir, member, flags, name):
  """The command lines of the member's evaluation `name`: llm.evaluate (or the command it names)
  on the member's config and the evaluation's overrides, its result in <command>_<name>.json;
  for a downstream fine-tune, llm.train of its config from the member's run into
  <member>/<name>/ and llm.evaluate of that on its split."""
  e = member.evaluations[name]
  run = pathlib.Path(workdir) / member.name
  own = [f"--{k}={v}" for k, v in e.flags.items()]
  if e.command == "train":
    common = [f"--config={e.config}", f"--workdir={run / name}", f"--config.init={run}",
              *(f"--config.{k}={v}" for k, v in e.overrides.items())]
    return [[sys.executable, "-m", "llm.train", *common, *own],
            [sys.executable, "-m", "llm.evaluate", *common, f"--split={e.split}"]]
  return [[sys.executable, "-m", f"llm.{e.command}", f"--config={spec}", f"--workdir={run}",
           *flags, *(f"--config.{k}={v}" for k, v in {**member.overrides, **e.overrides}.items()),
           *own, f"--name={name}"]]


def result_file(workdir, member, name):
  """Where the member's evaluation `name` writes its result."""
  e = member.evaluations[name]
  run = pathlib.Path(workdir) / member.name
  if e.command == "train":
    return run / name / ("evaluate.json" if e.split == "validation" else f"evaluate_{e.split}.json")
  return run / f"{e.command}_{name}.json"


def downstream_runs(workdir, member):
  """The member's downstream fine-tune directories that exist."""
  return [pathlib.Path(workdir) / member.name / name for name, e in member.evaluations.items()
          if e.command == "train"
          and (pathlib.Path(workdir) / member.name / name).exists()]


def trained(workdir, member):
  """Whether the member's run saved its final step (its checkpoint directory is committed)."""
  return (pathlib.Path(workdir) / member.name / "checkpoints" / str(member.total_steps)).is_dir()


def run_finished(run_dir):
  """Whether the run in `run_dir` saved the final step of the config it last started with."""
  config = latest_config(run_dir)
  return config is not None and (pathlib.Path(run_dir) / "checkpoints" / str(
      config["total_steps"])).is_dir()


def commands(spec, workdir, member, flags):
  """The commands the member still needs, in order: its training and then every evaluation
  while it is not trained (a file written before, of an earlier step, is redone), else each
  evaluation whose file does not exist yet."""
  if not trained(workdir, member):
    return [train_command(spec, workdir, member, flags)] + [
        command for name in member.evaluations
        for command in evaluation_commands(spec, workdir, member, flags, name)]
  return [command for name in member.evaluations
          if not result_file(workdir, member, name).is_file()
          for command in evaluation_commands(spec, workdir, member, flags, name)]


def finished(workdir, member):
  """Whether the member is trained and has every evaluation it names."""
  return not commands("", workdir, member, [])


def member_settings(listed, base):
  """For each member of `listed`, its value of every key some member overrides (what the report
  groups by), read from `base` with its overrides; {} for a member whose overrides do not
  apply (plan names that problem)."""
  keys = list(dict.fromkeys(k for overrides in listed for k in overrides))
  settings = []
  for overrides in listed:
    config = base.copy_and_resolve_references()
    try:
      config.update_from_flattened_dict(overrides)
      settings.append({k: config[k] for k in keys})
    except (ValueError, TypeError, KeyError, AttributeError):
      settings.append({})
  return settings


def write_plan(workdir, spec, flags, listed, evaluations=None, report=None, base=None):
  """<workdir>/sweep.json: the command's config and flags, every member of the sweep (`listed`)
  with its settings (member_settings of `base`), the evaluations each gets and the report's
  settings (what llm.report reads), the same whichever members this process runs."""
  settings = member_settings(listed, base) if base is not None else [{}] * len(listed)
  (pathlib.Path(workdir) / "sweep.json").write_text(json.dumps(
      {"config": spec, "flags": list(flags),
       "members": [{"name": member_name(o), "overrides": o, "settings": s}
                   for o, s in zip(listed, settings)],
       "evaluations": evaluations or {},
       "report": {k: ({str(x): m for x, m in v.items()} if k == "x" else v)
                  for k, v in (report or {}).items()}}, indent=2))
