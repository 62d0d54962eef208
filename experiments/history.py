"""Dated measurement history (experiments/results/measurements.jsonl) as markdown tables, one per kind.

  python experiments/history.py [--kind=KIND] [experiments/results/measurements.jsonl]

Rows are sorted by date, undated rows last (their order in the file; the file's `note` says
where they fall); `commit` and `note` are in the file only.
"""
import collections
import json
import pathlib
import sys


def cell(text):
  return "" if text is None else str(text).replace("|", "\\|")


def figures(values):
  return ", ".join(f"{key} {value}" for key, value in values.items())


def main(*args):
  kind = None
  path = "experiments/results/measurements.jsonl"
  for arg in args:
    if arg.startswith("--kind="):
      kind = arg.split("=", 1)[1]
    else:
      path = arg
  groups = collections.defaultdict(list)   # kinds in the order they first appear in the file
  for line in pathlib.Path(path).read_text().splitlines():
    row = json.loads(line)
    if kind is None or row["kind"] == kind:
      groups[row["kind"]].append(row)
  if not groups:
    sys.exit(f"no rows of kind {kind!r} in {path}")
  for name, rows in groups.items():
    rows.sort(key=lambda r: (r["date"] is None, r["date"] or ""))   # stable: undated keep file order
    print(f"## {name}\n")
    print("| date | what | figures | command | machine |")
    print("|---|---|---|---|---|")
    for r in rows:
      command = f"`{r['command']}`" if r["command"] else ""
      print(f"| {r['date'] or 'not stated'} | {cell(r['what'])} | {cell(figures(r['figures']))} | "
            f"{cell(command)} | {cell(r['machine'])} |")
    print()


if __name__ == "__main__":
  main(*sys.argv[1:])
