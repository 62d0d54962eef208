"""What the three entry points share: flags, config checks, workdir, one-line errors."""
import os
import pathlib
import re
import sys

from absl import flags, logging
from ml_collections import config_flags

from llm import parallel, tasks, transfer
from llm.models import heads as heads_lib, model_config

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config: configs/NAME.py[:arg].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and the config.")
flags.DEFINE_bool("distributed", False, "Multi-process run: call jax.distributed.initialize() "
                  "(auto-detects TPU pods and SLURM; elsewhere set JAX_COORDINATOR_ADDRESS, "
                  "JAX_NUM_PROCESSES, JAX_PROCESS_ID).")

def resolve_config(config, num_devices):
  """Fills in, once and before anything runs, what the config leaves to its sources (the init's
  architecture and tokenizer, the corpus' class count), then checks it; read-only after this."""
  transfer.resolve_init(config)
  if set(heads_lib.CLASS_HEADS) & set(tasks.get_task(config.objective).heads(config)):
    from llm.data import pipeline   # TFDS: only for corpora with labels
    count = pipeline.num_classes(pipeline.corpus_builder(config))
    if not count:
      raise ValueError(f"corpus {config.corpus!r} has no label or tags feature to classify")
    if config.model.num_classes not in (0, count):
      raise ValueError(f"model.num_classes={config.model.num_classes} but corpus "
                       f"{config.corpus!r} has {count} classes; leave it 0 to take the corpus' "
                       f"count")
    config.model.num_classes = count
  check_config(config, num_devices)
  return config


def check_config(config, num_devices):
  """One ValueError per problem a user can fix in the config, before anything expensive runs."""
  for key in ("total_steps", "batch_size", "seq_len", "vocab_size"):
    if config[key] <= 0:
      raise ValueError(f"{key}={config[key]} must be positive")
  task = tasks.get_task(config.objective)
  if config.model.family not in task.families:
    raise ValueError(f"objective={config.objective!r} needs a model.family in "
                     f"{list(task.families)}, not {config.model.family!r}")
  model_config(config)   # the model's own checks (kinds, shapes)
  task.check(config)
  prompt = config.model.get("prompt_length", 0)
  if prompt < 0:
    raise ValueError(f"model.prompt_length={prompt} must be >= 0")
  if config.seq_len + prompt > config.model.max_len:
    with_prompt = f" + model.prompt_length={prompt}" if prompt else ""
    raise ValueError(f"seq_len={config.seq_len}{with_prompt} is longer than model.max_len="
                     f"{config.model.max_len} (the position table); use seq_len <= "
                     f"{config.model.max_len - prompt} or a larger model.max_len")
  for key in ("optimizer.freeze", "optimizer.train_only", "lora.targets", "lora.train_also"):
    section, name = key.split(".")
    try:
      re.compile(config[section].get(name, ""))
    except re.error as e:
      raise ValueError(f"{key}={config[section][name]!r} is not a valid regex ({e})") from None
  sizes = parallel.mesh_shape(config.mesh, num_devices)
  ways = parallel.data_parallel_size(sizes, parallel.axis_rules(config))
  accum = config.optimizer.grad_accum_steps
  if config.batch_size % (ways * accum):
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the {ways} data-parallel"
                     f" shards x {accum} accumulation steps = {ways * accum}")
  for key in ("log_every", "eval_every", "checkpoint_every"):
    if config[key] < 0:
      raise ValueError(f"{key}={config[key]} must be >= 0 (0 = only at the end)")


def workdir_path(workdir, create=True):
  if not workdir:
    raise ValueError("--workdir is required")
  path = pathlib.Path(workdir).expanduser().absolute()   # Orbax needs absolute paths
  if create:
    try:
      path.mkdir(parents=True, exist_ok=True)
      probe = path / ".write_test"
      probe.write_text("")
      probe.unlink()
    except OSError as e:
      raise ValueError(f"workdir {path} is not writable ({e.strerror}); choose another --workdir")
  elif not path.is_dir():
    raise FileNotFoundError(f"workdir {path} does not exist")
  return path


def parse_flags(argv):
  """absl flag parsing with one-line errors: config_flags raises AttributeError/KeyError for an
  unknown `--config.key`, and flags.Error for a bad value or a missing config file."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      path = pathlib.Path(arg.split("=", 1)[1].split(":", 1)[0])
      if not path.is_file():
        raise SystemExit(f"error: config file {path} does not exist (expected configs/NAME.py)")
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    if os.environ.get("LLM_TRACEBACK"):
      raise
    if isinstance(e, (AttributeError, KeyError)):
      key = str(e).strip("\"'")
      bad = [a for a in argv[1:] if a.startswith("--config.") and key in a.split("=")[0]]
      raise SystemExit(f"error: unknown config key {key!r} in {' '.join(bad) or argv[1:]}; see "
                       f"the config file for the keys that exist")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):   # raised inside get_config()
      lines = [lines[0].split(":", 1)[0] + ":", lines[-1]]
    raise SystemExit(f"error: {' '.join(lines)}")


def run(fn, *args, needs_config=True):
  """Calls fn; user mistakes (ValueError, FileNotFoundError) end in one line and exit code 1.
  Set LLM_TRACEBACK=1 to see the full traceback instead."""
  if needs_config and FLAGS.config is None:
    raise SystemExit("error: --config=configs/NAME.py is required")
  if FLAGS.distributed:
    import jax   # initialise before anything touches the devices
    jax.distributed.initialize()
  if not FLAGS["verbosity"].present:
    # Orbax logs every save at INFO; our own progress lines go to stdout instead.
    logging.set_verbosity(logging.WARNING)
  try:
    return fn(*args)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("LLM_TRACEBACK"):
      raise
    # sys.__stderr__: a failed checkpoint restore leaves sys.stderr muted (see checkpoint.py).
    print(f"error: {e}", file=sys.__stderr__, flush=True)
    sys.stdout.flush()
    # Exit now: Orbax/grain background threads cut off mid-read would print tracebacks at exit.
    os._exit(1)
