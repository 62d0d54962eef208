"""Evaluation over a split: metric sums summed over batches, whole-split scores, and generated
text for the tasks that score it (summaries, translations)."""
import jax
import numpy as np

from llm import decoding, lora
from llm.steps import put_batch


def make_decoder(model, config, tok, mesh, rules):
  """(params, prompts) -> decoded ids per prompt, with config.decode's settings: batches of
  decode.batch_size prompts, all padded to one shape so that one program decodes them all."""
  d = config.decode
  settings = decoding.Settings(max_new_tokens=d.max_new_tokens, num_beams=d.num_beams,
                               length_penalty=d.length_penalty, stop_ids=(tok.eos_id,))

  def decode(params, prompts):
    params = lora.merge(params, config.lora)
    longest = max(map(len, prompts))
    out = []
    for start in range(0, len(prompts), d.batch_size):
      chunk = prompts[start:start + d.batch_size]
      full = chunk + [chunk[-1]] * (d.batch_size - len(chunk))   # the same shape every batch
      ids, _ = decoding.generate(model, params, full, settings, mesh, rules, pad_to=longest)
      out.extend(ids[:len(chunk)])
    return out
  return decode


def evaluate(eval_step, params, batches, mesh, rules, task, split=None, decode=None):
  """Metrics over all batches: sums of numerators/denominators, summarized; plus whole-split
  scores (e.g. entity F1) when the task has `score` (reading `split`, the tasks.EvalSet).
  Generative tasks (task.prompts) score what `decode` (make_decoder) generates from their prompts.
  Returns (metrics, predictions in batch order or None; the tasks match them to examples by
  the example index they carry)."""
  totals, predictions = {}, []
  for batch in batches:
    sums, predicted = jax.device_get(eval_step(params, put_batch(batch, mesh, rules)))
    for k, v in sums.items():   # scalars, or per-class count vectors
      totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    if predicted is not None:
      predictions.append(predicted)
  result = task.summarize(totals)
  # Arrays, or dicts of arrays (QA), one per batch -> one per split.
  predictions = (jax.tree.map(lambda *rows: np.concatenate(rows), *predictions)
                 if predictions else None)
  if task.prompts and split is not None:
    predictions = decode(params, task.prompts(split))
  if split is not None and task.score:
    result.update(task.score(predictions, split))
  return result, predictions
