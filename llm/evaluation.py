"""Evaluation over a split: metric sums summed over batches, whole-split scores, and generated
text for the tasks that score it (summaries, translations); and a saved checkpoint's evaluation,
what `python -m llm.evaluate` runs."""
import json

import jax
import numpy as np

from llm import checkpoint, cli, config_checks, decoding, lora, parallel, runlog, steps, tasks
from llm import transfer, weights
from llm.data import batching, corpora, tokenizer as tokenizer_lib
from llm.models import build_model
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
  the example index they carry).

  A mixture's batches ({corpus: batches}) give each corpus's metrics as `<corpus>/<metric>` and,
  unprefixed, those of all its batches together (every validation token counts once)."""
  if isinstance(batches, dict):
    sums = {name: _sums(eval_step, params, corpus_batches, mesh, rules)[0]
            for name, corpus_batches in batches.items()}
    overall = {k: sum(corpus[k] for corpus in sums.values()) for k in next(iter(sums.values()))}
    result = task.summarize(overall)
    for name, corpus in sums.items():
      result.update({f"{name}/{k}": v for k, v in task.summarize(corpus).items()})
    return result, None
  totals, predictions = _sums(eval_step, params, batches, mesh, rules)
  result = task.summarize(totals)
  # Arrays, or dicts of arrays (QA), one per batch -> one per split.
  predictions = (jax.tree.map(lambda *rows: np.concatenate(rows), *predictions)
                 if predictions else None)
  if task.prompts and split is not None:
    predictions = decode(params, task.prompts(split))
  if split is not None and task.score:
    result.update(task.score(predictions, split))
  return result, predictions


def _sums(eval_step, params, batches, mesh, rules):
  """(the metric sums over `batches`, the per-batch predictions)."""
  totals, predictions = {}, []
  for batch in batches:
    sums, predicted = jax.device_get(eval_step(params, put_batch(batch, mesh, rules)))
    for k, v in sums.items():   # scalars, or per-class count vectors
      totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    if predicted is not None:
      predictions.append(predicted)
  return totals, predictions


def evaluate_checkpoint(config, workdir, split="validation", name=""):
  """Scores the workdir's latest checkpoint (or, with config.init and no checkpoint yet, the init
  itself) on `split`; writes evaluate[_<corpus>][_<split>].json (evaluate_<name>.json when
  named) and, for generative tasks, the predictions file. Returns the metrics."""
  if name:
    cli.check_result_name(name)
  config_checks.resolve_config(config, jax.device_count())
  workdir = cli.workdir_path(workdir, create=bool(config.init), writable=True)
  checkpoints = checkpoint.Checkpoints(workdir, config.keep_checkpoints, create=False)
  zero_shot = bool(config.init) and checkpoints.latest_step() is None
  step = 0 if zero_shot else checkpoints.require_latest_step()
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.axis_rules(config)
  builder = corpora.prepare_corpus(config)
  if split not in builder.info.splits:
    raise ValueError(f"--split={split!r}: {config.corpus} has {sorted(builder.info.splits)}")
  tok = tokenizer_lib.load_tokenizer(config, builder)
  task = tasks.get_task(config.objective)
  model = build_model(config, task.heads(config))
  if zero_shot:
    runlog.log(f"no checkpoint in {checkpoints.directory}: evaluating init={config.init} as is")
    params = transfer.init_params(config, model, mesh)
  else:
    params = weights.checkpoint_params(checkpoints, step, config, mesh, tok)
  eval_step = steps.jit_eval_step(model, task, config, mesh,
                            jax.tree.map(lambda a: a.sharding, params))
  batches = batching.eval_batches(
      config, task, tok, builder, split,
      rows=parallel.process_rows(mesh, rules, batching.eval_batch_size(config)))
  evaluated = tasks.eval_set(task, builder, split, config, tok)
  decode = make_decoder(model, config, tok, mesh, rules) if task.prompts else None
  result, predictions = evaluate(eval_step, params, batches, mesh, rules, task, evaluated, decode)
  if jax.process_index() == 0:
    # One file per split (and per corpus other than the run's own), so evaluating the test split
    # or another corpus does not overwrite the validation result.
    trained = json.loads((workdir / "config.json").read_text()).get("corpus") if (
        workdir / "config.json").is_file() else config.corpus
    corpus = f"_{config.corpus}" if config.corpus != trained else ""
    suffix = f"_{name}" if name else f"{corpus}{'' if split == 'validation' else '_' + split}"
    (workdir / f"evaluate{suffix}.json").write_text(
        json.dumps({"step": step, "split": split, "corpus": config.corpus, **result}))
    if predictions is not None:   # one JSON line per example, in split order
      path = workdir / (f"predictions_{name}.jsonl" if name else
                        f"predictions{corpus}_{split}.jsonl")
      rows = task.records(predictions, evaluated)
      path.write_text("".join(json.dumps(row) + "\n" for row in rows))
      runlog.log(f"wrote {len(rows)} predictions to {path}")
  runlog.log(f"step {step}, {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
  return result
