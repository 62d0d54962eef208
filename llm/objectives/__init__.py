"""Objectives: each module maps model outputs + batch to a loss and metric sums.

An objective module defines HEADS (model outputs it reads), normalizers(batch), loss_fn(outputs,
batch, norms) -> (loss, sums) and summarize(sums) -> {metric: float}. Task objectives also define
predict(outputs, batch) (an array, or a dict of arrays, per row), records(predictions, source, info)
for predictions files, and optionally score(predictions, source, info) for metrics that need whole
sequences or questions; `info` is the label names, or for QA the decoding settings (config.qa). Adding a task means adding a
module here and a config, not editing the training loop.
"""
from llm.objectives import causal_lm, classification, cloze, extractive_qa, masked_lm, tagging

OBJECTIVES = {"causal_lm": causal_lm, "masked_lm": masked_lm, "classification": classification,
              "tagging": tagging, "extractive_qa": extractive_qa, "cloze": cloze}


def get_objective(name):
  if name not in OBJECTIVES:
    raise ValueError(f"objective={name!r}: expected one of {sorted(OBJECTIVES)}")
  return OBJECTIVES[name]
