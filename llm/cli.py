"""What the entry points share: flags, loading a config file, the workdir, one-line errors
(config checks: config_checks.py)."""
import difflib
import errno
import os
import pathlib
import re
import sys
import traceback

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from llm import checkpoint, parallel, quiet

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config: configs/NAME.py[:arg].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and the config.")
flags.DEFINE_bool("distributed", False, "Multi-process run: call jax.distributed.initialize() "
                  "(auto-detects TPU pods and SLURM; elsewhere set JAX_COORDINATOR_ADDRESS, "
                  "JAX_NUM_PROCESSES, JAX_PROCESS_ID).")

# What a run keeps in its workdir (True: a directory), beside config.resume-<step>.json, the
# evaluate*.json / generate_*.json / predictions_*.jsonl files and train.lock.
WORKDIR_ENTRIES = {"checkpoints": True, "tensorboard": True, "metrics.jsonl": False,
                   "config.json": False, "tokenizer.model": False}


def check_result_name(name, flag="--name"):
  """ValueError unless `name` can name a result file (evaluate_<name>.json, ...)."""
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name):
    raise ValueError(f"{flag}={name!r}: it becomes part of a file name (evaluate_<name>.json); "
                     f"use letters, digits and . _ - (e.g. len512), at most 200 of them")


def workdir_path(workdir, create=True, writable=None):
  """The absolute workdir (Orbax needs absolute paths). `create`: made if missing; `writable`
  (default: as `create`): checked to take new files before anything is computed for it."""
  if not workdir:
    raise ValueError("--workdir=DIR is required")
  try:
    path = pathlib.Path(workdir).expanduser().absolute()
    path.exists()   # a name too long for the file system, say
  except (OSError, RuntimeError) as e:   # RuntimeError: ~user of no such user
    raise ValueError(f"workdir {workdir} cannot be used ({getattr(e, 'strerror', None) or e}); "
                     f"choose another --workdir") from None
  if path.is_symlink() and not path.exists():
    raise ValueError(f"workdir {path} is a symbolic link to {os.readlink(path)}, which does not "
                     f"exist; choose another --workdir or create its target")
  if path.exists() and not path.is_dir():
    raise ValueError(f"workdir {path} is a file, not a directory; choose another --workdir")
  if not create and not path.is_dir():
    raise FileNotFoundError(f"workdir {path} does not exist")
  for name, is_dir in WORKDIR_ENTRIES.items():
    entry = path / name
    if entry.exists() and entry.is_dir() != is_dir:
      raise ValueError(f"workdir {path} holds {name} as a {'file' if is_dir else 'directory'}, "
                       f"where a run keeps its {name} {'directory' if is_dir else 'file'}; it is "
                       f"not a workdir of ours: choose another --workdir")
  if create if writable is None else writable:
    try:
      path.mkdir(parents=True, exist_ok=True)
      probe = path / f".write_test-{os.getpid()}"   # processes of one run share the workdir
      probe.write_text("")
      probe.unlink()
    except OSError as e:
      raise ValueError(f"workdir {path} is not writable ({e.strerror}); choose another --workdir")
  return path


def describe_os_error(e):
  """An OSError in words a user can act on: what failed where, and what to do for the usual
  causes (a full disk, a read-only file system, a permission)."""
  where = f" ({e.filename})" if e.filename else ""
  name = errno.errorcode.get(e.errno, "")
  advice = {"ENOSPC": "; free space and rerun the same command (saved checkpoints are intact)",
            "EDQUOT": "; free space and rerun the same command (saved checkpoints are intact)",
            "EROFS": "; use a writable directory", "EACCES": "; check the permissions",
            "EPERM": "; check the permissions"}.get(name, "")
  return f"{e.strerror or type(e).__name__}{f' [{name}]' if name else ''}{where}{advice}"


class _NoGetConfig(Exception):
  pass


class NotAConfig(TypeError):
  """get_config() returned something other than a ConfigDict."""


def compiled(path):
  """The config file's code (SyntaxError, UnicodeDecodeError: the file itself is bad)."""
  return compile(path.read_text(encoding="utf-8-sig"), str(path), "exec")   # a BOM is fine


def config_namespace(code, path):
  """What the config file at `path` defines (get_config, get_sweep, ...), `code` run once."""
  namespace = {"__name__": "llm_config", "__file__": str(path)}
  exec(code, namespace)   # noqa: S102 - the user's own config file, as config_flags runs it
  return namespace


def _get_config(code, path, arg, overrides):
  namespace = config_namespace(code, path)
  if not callable(namespace.get("get_config")):
    raise _NoGetConfig(path)
  config = namespace["get_config"](*([arg] if arg else []))
  if not isinstance(config, ml_collections.ConfigDict):
    raise NotAConfig(f"get_config() returned {type(config).__name__}, not an "
                     f"ml_collections.ConfigDict (start from llm.base_config.base_config())")
  if overrides:
    config.update_from_flattened_dict(overrides)
  return config


def load_config(path, arg=None, **overrides):
  """get_config(arg) of the config file at `path`, with `overrides` ({"model.num_layers": 2,
  ...}) set as --config.key=value would. The one way configs are loaded by path: scripts and
  tests call it and see the config's own exceptions; the CLI turns them into one line."""
  path = pathlib.Path(path)
  return _get_config(compiled(path), path, arg, overrides)


def _load_config_file(spec):
  """load_config of `configs/NAME.py[:arg]`, or SystemExit with one line on what is wrong."""
  path, _, arg = spec.partition(":")
  if not path or path.startswith("-"):   # --config= or --config --workdir=...
    raise SystemExit(f"error: --config needs a config file, e.g. --config=configs/gpt_tiny.py"
                     f"{f' (not {spec})' if spec else ''}")
  path = pathlib.Path(path)
  if path.is_dir():
    raise SystemExit(f"error: --config={spec} is a directory; name a config file in it, e.g. "
                     f"configs/gpt_tiny.py")
  if not path.is_file():
    raise SystemExit(f"error: config file {path} does not exist (expected configs/NAME.py)")
  try:
    code = compiled(path)
  except SyntaxError as e:
    line = f", line {e.lineno}" if e.lineno else ""
    raise SystemExit(f"error: config file {path}{line}: {e.msg}") from None
  except UnicodeDecodeError as e:
    raise SystemExit(f"error: config file {path} is not UTF-8 text ({e.reason})") from None
  try:
    return _get_config(code, path, arg or None, {})
  except _NoGetConfig:
    raise SystemExit(f"error: config file {path} defines no get_config(); a config file is "
                     f"`def get_config(arg=None): return <a ConfigDict>` (see configs/)") from None
  except NotAConfig as e:
    raise SystemExit(f"error: config file {path}: {e}") from None
  except Exception as e:  # noqa: BLE001 - whatever the user's code raised, name it in one line
    where = next((f", line {f.lineno}" for f in reversed(traceback.extract_tb(e.__traceback__))
                  if f.filename == str(path)), "")
    message = str(e).splitlines()[0] if str(e) else ""
    call = f"get_config({arg!r})" if arg else "get_config()"
    raise SystemExit(f"error: {call} in {path} raised {type(e).__name__}{where}: "
                     f"{message}") from None


def _config_keys(node, prefix=""):
  keys = []
  for key, value in node.items():
    keys.append(prefix + key)
    if hasattr(value, "items") and not isinstance(value, dict):
      keys += _config_keys(value, f"{prefix}{key}.")
  return keys


def _print_help():
  main = sys.modules["__main__"]
  print((main.__doc__ or "").strip() + "\n")
  # absl files a `python -m` module's flags under its path (sys.argv[0]).
  names = {"__main__", getattr(main, "__file__", None), sys.argv[0],
           getattr(getattr(main, "__spec__", None), "name", None)}
  own = [f for module, module_flags in FLAGS.flags_by_module_dict().items() if module in names
         for f in module_flags]
  for flag in [FLAGS[name] for name in ("config", "workdir", "distributed")] + own:
    print(f"  --{flag.name}: {flag.help} (default: {flag.default_as_str or 'none'})")
  print("  --config.KEY=VALUE: override any key of the config (see llm/base_config.py)")


def _not_utf8(argv):
  """The first argument that is not UTF-8 text (Python keeps such bytes as surrogates), or None."""
  for arg in argv:
    try:
      arg.encode("utf-8")
    except UnicodeEncodeError:
      return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
  return None


def config_specs(argv):
  """Every --config=FILE (or --config FILE) value on the command line."""
  return [a.split("=", 1)[1] if "=" in a else next(iter(argv[i + 1:i + 2]), "")
          for i, a in enumerate(argv) if a == "--config" or a.startswith("--config=")]


def parse_flags(argv):
  """absl flag parsing with one-line errors (config_flags raises AttributeError/KeyError for an
  unknown `--config.key`, flags.Error for a bad value, and lets errors inside get_config() out
  as tracebacks); `--help` lists the entry point's flags and exits 0."""
  if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
    _print_help()
    raise SystemExit(0)
  if (bad := _not_utf8(argv[1:])) is not None:
    raise SystemExit(f"error: the argument {bad} is not UTF-8 text (shown with \\x escapes); "
                     f"give flags and texts as UTF-8")
  specs = config_specs(argv[1:])
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  if len(specs) > 1:
    raise SystemExit(f"error: --config is given {len(specs)} times ({', '.join(specs)}); give one "
                     f"config file and override its keys with --config.KEY=VALUE")
  if overrides and not specs:
    raise SystemExit(f"error: {overrides[0].split('=', 1)[0]} overrides a key of the config "
                     f"file, but no --config=configs/NAME.py is given")
  config = _load_config_file(specs[0]) if specs else None
  if config is not None:
    for arg in overrides:
      key, has_value, value = arg[len("--config."):].partition("=")
      problem = override_problem(config, key, value if has_value else None)
      if problem:
        raise SystemExit(f"error: {problem}")
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    if os.environ.get("LLM_TRACEBACK"):
      raise
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    raise SystemExit(f"error: {_flag_value_problem(e, argv) or ' '.join(lines)}")


# absl's parsers of the flag types a value can be wrong for, and what each takes, in words.
_PARSERS = {"int": (flags.IntegerParser(), "a whole number"),
            "float": (flags.FloatParser(), "a number"),
            "bool": (flags.BooleanParser(), "true or false")}


def value_problem(flag, value, kind, note):
  """'FLAG=VALUE: expected a whole number (NOTE)' if `value` does not parse as `kind` (int,
  float or bool, as absl parses them), else None."""
  if kind not in _PARSERS:
    return None
  parser, words = _PARSERS[kind]
  try:
    parser.parse(value)
  except (ValueError, TypeError):
    return f"{flag}={value}: expected {words} ({note})"
  return None


def _flag_value_problem(error, argv):
  """An entry point's flag given a value of the wrong type, in words (absl's own message shows
  Python's: "invalid literal for int() with base 10"), or None."""
  found = re.match(r"flag --([\w.]+)=", str(error))
  if not isinstance(error, flags.IllegalFlagValueError) or not found or found[1] not in FLAGS:
    return None
  flag = FLAGS[found[1]]
  given = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag.name}=")]
  note = f"the default is {flag.default!r}" if flag.default is not None else flag.help.rstrip(".")
  return bool(given) and value_problem(f"--{flag.name}", given[-1], flag.flag_type(), note)


def override_problem(config, key, value=None):
  """Why --config.KEY=VALUE cannot be set on `config` (an unknown key, with the nearest known
  one; a list; a group of keys; a `value` (text, if given) of the wrong type), or None."""
  keys = _config_keys(config)
  parents = [k for k in keys if key.startswith(k + ".")]
  if key not in keys and not any(_is_open_dict(config, k) for k in parents):
    near = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else "; see the config file for its keys"
    return f"unknown config key {key}{hint}"
  if key in keys and isinstance(_node(config, key), list):
    return (f"--config.{key} is a list, which the command line cannot set; set it in a config "
            f"file (configs/*.py)")
  if key not in keys or value is None:
    return None
  current = _node(config, key)
  if isinstance(current, ml_collections.ConfigDict) and not value.lstrip().startswith("{"):
    names = list(current)
    return (f"--config.{key}={value}: {key} is a group of keys ({', '.join(names[:4])}"
            f"{', ...' * (len(names) > 4)}); set one of them, e.g. --config.{key}."
            f"{next(iter(names), 'KEY')}=VALUE")
  kind = next((name for name, t in (("bool", bool), ("int", int), ("float", float))
               if isinstance(current, t)), None)
  return value_problem(f"--config.{key}", value, kind, f"the config has {current!r}")


def no_arguments(argv):
  """SystemExit with one line for words left after the flags (e.g. an unquoted --prompt)."""
  if len(argv) > 1:
    raise SystemExit(f"error: unexpected argument{'s' * (len(argv) > 2)} {' '.join(argv[1:])!r}: "
                     f"every value is a --flag=value (quote values with spaces: --prompt='two "
                     f"words')")


def _node(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _is_open_dict(config, key):
  """A plain-dict field (e.g. cloze.verbalizer), whose keys a user may add."""
  return isinstance(_node(config, key), dict)


def run(fn, *args, needs_config=True):
  """Calls fn; user mistakes (ValueError), failed reads and writes (OSError: a full disk, a
  missing file), failed saves and running out of memory end in one line and exit code 1. Set
  LLM_TRACEBACK=1 to see the full traceback instead."""
  if needs_config and FLAGS.config is None:
    raise SystemExit("error: --config=configs/NAME.py is required")
  if not FLAGS["verbosity"].present:
    # Orbax logs every save at INFO, jax.distributed its start-up; our own progress lines go to
    # stdout instead.
    logging.set_verbosity(logging.WARNING)
  restore_stdout = lambda: None
  if FLAGS.distributed:   # before anything touches the devices
    # Gloo (CPU collectives) prints a connection banner from C++ straight to stdout.
    restore_stdout = quiet.drop_native_stdout()
    try:
      parallel.initialize_distributed()
    except ValueError as e:
      restore_stdout()
      raise SystemExit(f"error: {e}") from None
  if not FLAGS["logtostderr"].present:
    # Log through whatever sys.stderr is at the time (not the stream absl captured at start),
    # so a failed save's tracebacks can be held back (see quiet.HeldStderr).
    FLAGS.logtostderr = True
  try:
    return fn(*args)
  except (ValueError, OSError, checkpoint.SaveFailed, MemoryError, RuntimeError) as e:
    out_of_memory = isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)
    other = isinstance(e, RuntimeError) and not isinstance(e, checkpoint.SaveFailed)
    if os.environ.get("LLM_TRACEBACK") or (other and not out_of_memory):   # a bug: its traceback
      raise
    # An OSError of ours carries only a message; one from a write or a library, its errno.
    text = describe_os_error(e) if isinstance(e, OSError) and e.errno else str(e)
    if out_of_memory:   # host (numpy) or device (XLA) memory
      text = (f"out of memory ({text.splitlines()[0] if text else type(e).__name__}); use a "
              f"smaller batch_size, seq_len or model (python -m llm.plan shows what a config "
              f"needs per device)")
    # sys.__stderr__: a failed checkpoint restore leaves sys.stderr muted (see quiet.muted_reads).
    print(f"error: {text}", file=sys.__stderr__, flush=True)
    restore_stdout()
    # Exit now: Orbax/grain background threads cut off mid-read would print tracebacks at exit.
    os._exit(1)
