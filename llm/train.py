"""Trains any experiment; rerunning the same command on the same workdir resumes it.

  python -m llm.train --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny [--config.key=value]

The run itself, read top to bottom, is training.train_and_evaluate.
"""
import json

import jax
from absl import app

from llm import cli
from llm.training import train_and_evaluate


def main(argv):
  cli.no_arguments(argv)
  result = cli.run(train_and_evaluate, cli.FLAGS.config, cli.FLAGS.workdir)
  # Nothing evaluated when interrupted (SIGTERM/SIGINT) after saving; one process reports.
  if not result or jax.process_index() != 0:
    return
  print(json.dumps({"final_eval": result}))
  if "perplexity" in result:
    print(f"validation perplexity: {result['perplexity']:.2f}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
