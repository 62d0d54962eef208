"""Writes a sweep's report: <workdir>/results.md (the members' final figures, mean ± std over
seeds for each setting of the swept keys) and PNG plots (loss curves per member; --metric
against the swept setting, with error bars; with the config file's get_report "x", metrics
against a value, one line per setting: against.png).

  python -m llm.report --workdir=runs/gpt_tiny_seeds [--metric=eval/perplexity]
"""
from absl import app, flags

from llm import cli, reports

flags.DEFINE_string("metric", "", "The figure plotted against the swept setting (default: the "
                    "sweep's get_report metric, else eval/loss).")


def main(argv):
  cli.no_arguments(argv)
  text = cli.run(lambda: reports.write_report(cli.workdir_path(
      cli.FLAGS.workdir, create=False, writable=True), flags.FLAGS.metric), needs_config=False)
  print(text, end="")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
