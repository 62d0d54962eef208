"""Config checks, once and before anything expensive runs: what the config leaves to its sources
is filled in, every numeric key is inside its interval (base_config.all_ranges), and every setting a
user can get wrong is one ValueError that says what would be right."""
import math
import re

import jax

from llm import optim, parallel, tasks, transfer
from llm.base_config import all_ranges
from llm.data import mixture
from llm.models import heads as heads_lib, model_config


# SentencePiece's model types (tokenizer.model_type).
SPM_TYPES = ("unigram", "bpe", "char", "word")


# What a run does when a step's loss or gradient norm is not finite (see train.py).
NONFINITE_POLICIES = ("stop", "skip")


def choices():
  """{key: the values it may take} of the settings that name one of a few things (the model's
  own are checked with the model: models.model_config)."""
  from llm.data import corpora, tokenizer   # the data layer: only when a config is checked
  return {"objective": tasks.names(), "corpus": corpora.corpus_names(),
          "masking": ("static", "dynamic"), "on_nonfinite": NONFINITE_POLICIES,
          "optimizer.decay": optim.DECAYS, "tokenizer.kind": tuple(tokenizer.LOADERS),
          "tokenizer.model_type": SPM_TYPES}


def check_choices(config):
  """Every key of choices() set to one of its values (checked for every objective: a typo in
  a key this run does not read would wait for the run that does)."""
  for key, options in choices().items():
    section, _, name = key.rpartition(".")
    value = (config.get(section) or {} if section else config).get(name)
    if value not in options:
      raise ValueError(f"{key}={value!r}: expected one of {list(options)}")
  if config.tokenizer.kind != "sentencepiece" and not config.tokenizer.path:
    raise ValueError(f"tokenizer.kind={config.tokenizer.kind!r} reads tokenizer.path, which is "
                     f"empty: set --config.tokenizer.path (a Hugging Face BERT folder for "
                     f"wordpiece, a .gguf file for gguf) or use kind='sentencepiece'")


def resolve_config(config, num_devices):
  """Fills in, once and before anything runs, what the config leaves to its sources (the init's
  architecture and tokenizer, the corpus' class names and count), then checks it; read-only
  after this."""
  transfer.resolve_init(config)
  task = tasks.get_task(config.objective)
  if task.labels:
    from llm.data import corpora   # TFDS: only for corpora with labels
    names = corpora.label_names(corpora.corpus_builder(config))   # features only, nothing built
    if not names:
      raise ValueError(f"corpus {config.corpus!r} has no label or tags feature, which "
                       f"objective={config.objective!r} reads")
    config.label_names = tuple(names)
  if set(heads_lib.CLASS_HEADS) & set(task.heads(config)):
    count = len(config.label_names)
    if config.model.num_classes not in (0, count):
      raise ValueError(f"model.num_classes={config.model.num_classes} but corpus "
                       f"{config.corpus!r} has {count} classes; leave it 0 to take the corpus' "
                       f"count")
    config.model.num_classes = count
  check_config(config, num_devices)
  return config


def in_interval(value, interval):
  """Whether `value` lies in `interval`, written "[0, 1)", "(0, inf)", ... (NaN never does)."""
  low, high = (float(x) for x in interval[1:-1].split(","))
  above = value >= low if interval[0] == "[" else value > low
  below = value <= high if interval[-1] == "]" else value < high
  return above and below and math.isfinite(value)


def _interval_words(interval, value):
  low, high = interval[1:-1].split(", ")
  if low == "-inf" and high == "inf":
    return "must be a finite number"
  finite = "" if math.isfinite(value) else "finite and "
  if high == "inf":
    return f"must be {finite}{'>=' if interval[0] == '[' else '>'} {low}"
  return f"must be {finite}in {interval}"


def check_ranges(config):
  """Every numeric key inside its interval (base_config.all_ranges): one ValueError naming the first
  that is not (a NaN, a negative count, a probability past 1, a string)."""
  for key, spec in all_ranges().items():
    interval, meaning = spec if isinstance(spec, tuple) else (spec, "")
    section, _, name = key.rpartition(".")
    node = config.get(section) or {} if section else config
    if name not in node:
      continue
    value = node[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not in_interval(value, interval):
      words = _interval_words(interval, value) if ok else "must be a number"
      raise ValueError(f"{key}={value!r} {words}{f' ({meaning})' if meaning else ''}")


def check_config(config, num_devices):
  """One ValueError per problem a user can fix in the config, before anything expensive runs.
  num_devices=None: the devices are another process's (llm.sweep's members): the checks that
  need them (mesh and batch split, cuDNN) are left to that process."""
  check_ranges(config)
  check_choices(config)
  task = tasks.get_task(config.objective)
  mixture.check(config, [t.name for t in tasks.all_tasks()
                         if not (t.labels or t.records or t.score or t.prompts)])
  if config.model.family not in task.families:
    source = f" (init={config.init!r} is one)" if config.init else ""
    raise ValueError(f"objective={config.objective!r} needs a model.family in "
                     f"{list(task.families)}, not {config.model.family!r}{source}")
  model_config(config)   # the model's own checks (kinds, shapes)
  task.check(config)
  prompt = config.model.get("prompt_length", 0)
  if config.seq_len + prompt > config.model.max_len:
    with_prompt = f" + model.prompt_length={prompt}" if prompt else ""
    room = config.model.max_len - prompt
    smaller_prompt = " or a smaller model.prompt_length" if prompt else ""
    fix = (f"use seq_len <= {room} or a larger model.max_len" if room >= 2 else
           f"set model.max_len >= {config.seq_len + prompt}{smaller_prompt}")
    raise ValueError(f"seq_len={config.seq_len}{with_prompt} is longer than model.max_len="
                     f"{config.model.max_len} (the position table); {fix}")
  if (num_devices is not None and config.model.attention_impl == "cudnn"
      and jax.default_backend() != "gpu"):
    raise ValueError(f"model.attention_impl='cudnn' needs an NVIDIA GPU, and this run has "
                     f"{jax.default_backend()} devices; use 'auto' or 'xla'")
  for key in ("optimizer.freeze", "optimizer.train_only", "optimizer.no_decay", "lora.targets",
              "lora.train_also"):
    section, name = key.split(".")
    try:
      re.compile(config[section].get(name, ""))
    except re.error as e:
      raise ValueError(f"{key}={config[section][name]!r} is not a valid regex ({e})") from None
  if num_devices is not None:
    sizes = parallel.mesh_shape(config.mesh, num_devices)
    ways = parallel.data_parallel_size(sizes, parallel.axis_rules(config))
    accum = config.optimizer.grad_accum_steps
    if config.batch_size % (ways * accum):
      raise ValueError(f"batch_size={config.batch_size} must be divisible by the {ways} "
                       f"data-parallel shards x {accum} accumulation steps = {ways * accum}")
  shards = config.input_shards
  if config.batch_size % shards:
    raise ValueError(f"input_shards={shards} must divide batch_size={config.batch_size} (each "
                     f"input shard fills an equal part of the batch)")
  if config.eval_batches == 0 or config.eval_batches < -1:
    raise ValueError(f"eval_batches={config.eval_batches} must be -1 (the whole validation "
                     f"split) or a positive number of batches")
  if config.extra_ids and not task.extra_ids:
    users = ", ".join(t.name for t in tasks.all_tasks() if t.extra_ids)
    raise ValueError(f"extra_ids={config.extra_ids}: only the objectives that read ids past the "
                     f"tokenizer's take it ({users}); leave it 0 for "
                     f"objective={config.objective!r}")
  for key in ("stop_at_step", "nan_at_step"):
    if config[key] > config.total_steps:
      raise ValueError(f"{key}={config[key]} is past total_steps={config.total_steps}, so it "
                       f"would never happen")
