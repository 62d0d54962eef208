"""Objectives: each module maps model outputs + batch to a loss and metric sums.

An objective module defines HEADS (model outputs it reads), normalizers(batch), loss_fn(outputs,
batch, norms) -> (loss, sums) and summarize(sums) -> {metric: float}. Task objectives also define
predict(outputs, batch), records(predictions, source, label_names) for predictions files, and
optionally score(predictions, source, label_names) for metrics that need whole sequences. Adding a task means adding a
module here and a config, not editing the training loop.
"""
from llm.objectives import causal_lm, classification, masked_lm, tagging

OBJECTIVES = {"causal_lm": causal_lm, "masked_lm": masked_lm, "classification": classification,
              "tagging": tagging}


def get_objective(name):
  if name not in OBJECTIVES:
    raise ValueError(f"objective={name!r}: expected one of {sorted(OBJECTIVES)}")
  return OBJECTIVES[name]
