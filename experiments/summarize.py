"""Mean ± std (over seeds) of experiments/results/finetune.jsonl, as a markdown table.

  python experiments/summarize.py [experiments/results/finetune.jsonl | finetune_test.jsonl]
"""
import collections
import json
import pathlib
import sys

import numpy as np

METRICS = ("eval/accuracy", "eval/macro_f1", "eval/span_f1", "eval/exact_match", "eval/f1",
           "eval/rouge1", "eval/rouge2", "eval/rougeL", "eval/bleu", "eval/chrf")
# Row order: by task, then as first run.
TASKS = ("topic", "sentiment", "spam", "ner", "qa", "summarize", "headline", "translate")


def main(path="experiments/results/finetune.jsonl"):
  runs = collections.defaultdict(dict)
  for line in pathlib.Path(path).read_text().splitlines():
    row = json.loads(line)
    if "superseded" in row:   # kept for the record (why: its value), left out of the table
      continue
    runs[row["name"]][row["seed"]] = row        # a rerun of a seed replaces the earlier line
  print("| run | seeds | " + " | ".join(m.split("/")[1] for m in METRICS) + " | seconds/run |")
  print("|---|---|" + "---|" * len(METRICS) + "---|")
  order = sorted(runs, key=lambda name: TASKS.index(name.split("_")[0]))   # stable within a task
  for name in order:
    seeds = runs[name]
    rows = list(seeds.values())
    cells = []
    for metric in METRICS:
      values = [r[metric] for r in rows if metric in r]
      if not values:
        cells.append("")
      elif len(values) == 1:
        cells.append(f"{values[0]:.3f}")
      else:   # sample standard deviation over seeds
        cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}")
    seconds = np.mean([r["seconds"] for r in rows])
    print(f"| {name} | {len(rows)} | " + " | ".join(cells) + f" | {seconds:.0f} |")


if __name__ == "__main__":
  main(*sys.argv[1:])
