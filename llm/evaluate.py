"""Evaluates the latest checkpoint of a workdir on the validation split.

With `config.init` set and no checkpoint in the workdir yet, it evaluates the init itself when
the init holds every parameter of the model (zero-shot: e.g. a masked LM through
configs/cloze_topic.py, before any fine-tuning).

  python -m llm.evaluate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny [--config.key=value]
Prints the figures and writes them to <workdir>/evaluate.json (evaluate_<split>.json for
--split other than validation; evaluate_<corpus>[_<split>].json for a corpus other than the run's).
"""
import json

import jax
from absl import app, flags

from llm import checkpoint, cli, config_checks, parallel, runlog, tasks, transfer, weights
from llm.data import batching, corpora, tokenizer as tokenizer_lib
from llm.models import build_model
from llm.evaluation import evaluate, make_decoder
from llm.steps import jit_eval_step

flags.DEFINE_string("split", "validation", "Which split of the corpus to evaluate on.")


def evaluate_checkpoint(config, workdir, split):
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
  eval_step = jit_eval_step(model, task, config, mesh,
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
    (workdir / f"evaluate{corpus}{'' if split == 'validation' else '_' + split}.json").write_text(
        json.dumps({"step": step, "split": split, "corpus": config.corpus, **result}))
    if predictions is not None:   # one JSON line per example, in split order
      path = workdir / f"predictions{corpus}_{split}.jsonl"
      rows = task.records(predictions, evaluated)
      path.write_text("".join(json.dumps(row) + "\n" for row in rows))
      runlog.log(f"wrote {len(rows)} predictions to {path}")
  runlog.log(f"step {step}, {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
  return result


def main(argv):
  cli.no_arguments(argv)
  cli.run(evaluate_checkpoint, cli.FLAGS.config, cli.FLAGS.workdir, flags.FLAGS.split)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
