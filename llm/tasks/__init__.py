"""Tasks: each module here is one task, described by one record, `TASK`.

A task says which model families it fits and which heads it reads, how it turns a corpus' examples
into rows, its loss and metric sums, and, for evaluation, its predictions (from the forward pass,
or decoded from prompts), whole-split scores and predictions file, and the Hugging Face class an
export of it becomes. The loop, the CLI and the model never name a task: `config.objective`
picks the module `llm.tasks.<objective>`, so adding a task is adding one module and one config.
"""
import dataclasses
import importlib
import pkgutil
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  families: tuple[str, ...]            # model families the task fits
  heads: Callable                      # config -> names of the heads it reads (models/heads.py)
  # (docs, all_docs, config, tok, train, shard) -> grain dataset; shard: the input shard built
  rows: Callable
  normalizers: Callable                # batch -> loss denominators over the whole batch
  loss_fn: Callable                    # (outputs, batch, norms) -> (loss, metric sums)
  summarize: Callable                  # summed metric sums -> {metric: float}
  predict: Optional[Callable] = None   # (outputs, batch) -> per-row predictions (jitted)
  # (builder, split, config, tokenizer) -> what prompts/records/score read
  reference: Optional[Callable] = None
  # Generative tasks: (*reference) -> the token ids to decode from, one list per example; the
  # decoded ids (llm/decoding.py, config.decode) are then the predictions.
  prompts: Optional[Callable] = None
  records: Optional[Callable] = None   # (predictions, *reference) -> one dict per example
  score: Optional[Callable] = None     # (predictions, *reference) -> whole-split metrics
  check: Callable = lambda config: None   # raises ValueError for task settings that cannot work
  export_class: Callable = lambda config: None   # config -> Hugging Face class name, or None
  # Row keys padded with -1 ("nothing here") in padding rows; all others pad with 0.
  pad_with_minus_one: tuple[str, ...] = ("labels",)


def names():
  """Every task module in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if hasattr(
      importlib.import_module(f"{__name__}.{m.name}"), "TASK"))


def get_task(name):
  if not name or name.startswith("_") or name not in names():
    raise ValueError(f"objective={name!r}: expected one of {names()}")
  return importlib.import_module(f"{__name__}.{name}").TASK
