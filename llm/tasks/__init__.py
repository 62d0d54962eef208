"""Tasks: each module here is one task, described by one record, `TASK`.

A task says which model families it fits and which heads it reads, how it turns a corpus' examples
into rows, its loss and metric sums, and, for evaluation, its predictions (from the forward pass,
or decoded from prompts), whole-split scores and predictions file, and the Hugging Face class an
export of it becomes. The loop, the CLI and the model never name a task: `config.objective`
picks the module `llm.tasks.<objective>`, so adding a task is adding one module and one config.

Callbacks take what they need by name: `rows` names any of `docs` (the (index, example) stream
to read), `all_docs` (every document of the split, for tasks that draw from elsewhere), `config`,
`tok`, `train` and `shard` (the input shard built); evaluation's `prompts`, `records` and `score`
read one `EvalSet`.
"""
import dataclasses
import functools
import importlib
import inspect
import pkgutil
from typing import Any, Callable, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  families: tuple[str, ...]            # model families the task fits
  heads: Callable                      # config -> names of the heads it reads (models/heads.py)
  rows: Callable                       # (named arguments, see above) -> grain dataset of rows
  normalizers: Callable                # batch -> loss denominators over the whole batch
  loss_fn: Callable                    # (outputs, batch, norms) -> (loss, metric sums)
  summarize: Callable                  # summed metric sums -> {metric: float}
  predict: Optional[Callable] = None   # (outputs, batch) -> per-row predictions (jitted)
  # Generative tasks: EvalSet -> the token ids to decode from, one list per example; the decoded
  # ids (llm/decoding.py, config.decode) are then the predictions.
  prompts: Optional[Callable] = None
  records: Optional[Callable] = None   # (predictions, EvalSet) -> one dict per example
  score: Optional[Callable] = None     # (predictions, EvalSet) -> whole-split metrics
  # (the split's data source, config) -> the examples evaluated (default: all, as stored)
  examples: Optional[Callable] = None
  check: Callable = lambda config: None   # raises ValueError for task settings that cannot work
  export_class: Callable = lambda config: None   # config -> Hugging Face class name, or None
  # Row keys padded with -1 ("nothing here") in padding rows; all others pad with 0.
  pad_with_minus_one: tuple[str, ...] = ("labels",)
  # Whether the task reads ids past the tokenizer's (config.extra_ids: sentinels, T5's and
  # others'); any other task refuses extra_ids.
  extra_ids: bool = False
  # Whether the task reads the corpus' class names: they are config.label_names, filled in once
  # when the config is resolved (config_checks.py), and a corpus without them is refused.
  labels: bool = False
  # The task's own config keys with their defaults (base_config puts every task's in every
  # config), the interval each numeric one may take (as base_config.RANGES), and those that
  # change the data stream, which a resume must keep (compatibility.py).
  config: dict = dataclasses.field(default_factory=dict)
  ranges: dict = dataclasses.field(default_factory=dict)
  stream_keys: tuple[str, ...] = ()

  def make_rows(self, **available):
    """`rows` called with those of `available` (docs, all_docs, config, tok, train, shard) that
    it names."""
    wanted = inspect.signature(self.rows).parameters
    return self.rows(**{k: v for k, v in available.items() if k in wanted})


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One split as evaluation reads it beside the batches: its examples in split order (rows
  find theirs by the example index they carry), the names of its classes (config.label_names),
  the tokenizer and the run's config."""
  examples: Sequence
  label_names: tuple[str, ...]
  tok: Any
  config: Any


@functools.cache
def names():
  """Every task module in this package (looked up once: base_config, the ranges and the stream
  keys read every task's record each time they are built)."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if hasattr(
      importlib.import_module(f"{__name__}.{m.name}"), "TASK")))


def get_task(name):
  if not name or name.startswith("_") or name not in names():
    raise ValueError(f"objective={name!r}: expected one of {list(names())}")
  return importlib.import_module(f"{__name__}.{name}").TASK


def all_tasks():
  return [importlib.import_module(f"{__name__}.{name}").TASK for name in names()]


def eval_set(task, builder, split, config, tok):
  """The EvalSet of `split` when the task reads one (records, scores or prompts), else None."""
  if not (task.records or task.score or task.prompts):
    return None
  source = builder.as_data_source(split)
  examples = task.examples(source, config) if task.examples else source
  return EvalSet(examples, tuple(config.label_names), tok, config)
