"""Evaluates the latest checkpoint of a workdir on the validation split.

With `config.init` set and no checkpoint in the workdir yet, it evaluates the init itself when
the init holds every parameter of the model (zero-shot: e.g. a masked LM through
configs/cloze_topic.py, before any fine-tuning).

  python -m llm.evaluate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny [--config.key=value]
Prints the figures and writes them to <workdir>/evaluate.json (evaluate_<split>.json for
--split other than validation; evaluate_<corpus>[_<split>].json for a corpus other than the run's;
evaluate_<name>.json with --name, e.g. an evaluation at another length:
--config.seq_len=512 --name=len512).
"""
from absl import app, flags

from llm import cli
from llm.evaluation import evaluate_checkpoint

flags.DEFINE_string("split", "validation", "Which split of the corpus to evaluate on.")
flags.DEFINE_string("name", "", "Names the result file evaluate_<name>.json (and the predictions "
                    "file predictions_<name>.jsonl) instead of the split and corpus.")


def main(argv):
  cli.no_arguments(argv)
  cli.run(evaluate_checkpoint, cli.FLAGS.config, cli.FLAGS.workdir, flags.FLAGS.split,
          flags.FLAGS.name)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
