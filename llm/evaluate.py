"""Evaluates the latest checkpoint of a workdir on the validation split.

With `config.init` set and no checkpoint in the workdir yet, it evaluates the init itself when
the init holds every parameter of the model (zero-shot: e.g. a masked LM through
configs/cloze_topic.py, before any fine-tuning).

  python -m llm.evaluate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny [--config.key=value]
Prints the figures and writes them to <workdir>/evaluate.json.
"""
import json

import jax
from absl import app, flags

from llm import checkpoint, cli, metrics, optim, parallel, state as state_lib, transfer
from llm.data import pipeline
from llm.models import build_model
from llm.objectives import get_objective
from llm.train import evaluate, make_eval_step

flags.DEFINE_string("split", "validation", "Which split of the corpus to evaluate on.")


def evaluate_checkpoint(config, workdir, split):
  transfer.resolve_init(config)
  cli.check_config(config, jax.device_count())
  workdir = cli.workdir_path(workdir, create=bool(config.init))
  manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
  zero_shot = bool(config.init) and manager.latest_step() is None
  step = 0 if zero_shot else checkpoint.latest_compatible_step(manager, config)
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.axis_rules(config)
  builder = pipeline.prepare_corpus(config)
  pipeline.set_num_classes(config, builder)
  if split not in builder.info.splits:
    raise ValueError(f"--split={split!r}: {config.corpus} has {sorted(builder.info.splits)}")
  tok = pipeline.load_tokenizer(config, builder)
  model, objective = build_model(config), get_objective(config.objective)
  optimizer, _ = optim.make_optimizer(config)
  abstract_state, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  if zero_shot:
    metrics.log(f"no checkpoint in {manager.directory}: evaluating init={config.init} as is")
    params = state_lib.init_state(model, optimizer, config, shardings)["params"]
    state = {"params": transfer.load_pretrained(config, params, mesh, require_all=True)}
  else:
    state = checkpoint.restore(manager, step, abstract_state)
  eval_step = jax.jit(make_eval_step(model, objective, config), in_shardings=(shardings["params"], None),
                      out_shardings=parallel.replicated(mesh))
  batches = pipeline.eval_batches(config, tok, builder, split)
  reference = pipeline.eval_reference(builder, split, config)
  result, predictions = evaluate(eval_step, state["params"], batches, mesh, rules, objective,
                                 reference)
  if jax.process_index() == 0:
    (workdir / "evaluate.json").write_text(json.dumps({"step": step, "split": split, **result}))
    if predictions is not None:   # one JSON line per example, in split order
      path = workdir / f"predictions_{split}.jsonl"
      rows = objective.records(predictions, *reference)
      path.write_text("".join(json.dumps(row) + "\n" for row in rows))
      metrics.log(f"wrote {len(rows)} predictions to {path}")
  metrics.log(f"step {step}, {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.run(evaluate_checkpoint, cli.FLAGS.config, cli.FLAGS.workdir, flags.FLAGS.split)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
