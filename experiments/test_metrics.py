"""Evaluates every finished sweep run on the test split and appends one JSON line per run to
experiments/results/finetune_test.jsonl (same fields as finetune.jsonl, test figures as eval/*).

  python experiments/test_metrics.py RUNS_DIR [PLACEHOLDER=WORKDIR ...]
(the placeholders of experiments/finetune_sweep.sh, e.g. RECIPE_WORKDIR=runs/recipe_bert, put
back into each run's command). Runs already in the results file (on a line not marked
`superseded`) are skipped; summarize.py reads the file like finetune.jsonl.
"""
import json
import pathlib
import shlex
import subprocess
import sys
import time

RESULTS = pathlib.Path("experiments/results/finetune_test.jsonl")


def main(runs, *workdirs):
  placeholders = dict(arg.split("=", 1) for arg in workdirs)
  done = set()
  if RESULTS.exists():
    # Lines marked `superseded` are earlier runs of a name and seed that is being rerun.
    done = {(r["name"], r["seed"]) for r in map(json.loads, RESULTS.read_text().splitlines())
            if "superseded" not in r}
  for marker in sorted(pathlib.Path(runs).glob("*/done.json")):
    run = json.loads(marker.read_text())
    if run.get("skipped") or (run["name"], run["seed"]) in done:
      continue
    command = run["command"]
    for placeholder, workdir in placeholders.items():
      command = command.replace(placeholder, workdir)
    args = shlex.split(command)[3:]   # drop "python -m llm.train"
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "llm.evaluate", *args, "--split=test",
                           f"--workdir={marker.parent}"], capture_output=True, text=True)
    if proc.returncode:
      print(f"{run['name']} seed {run['seed']}: {proc.stderr.strip().splitlines()[-1]}")
      continue
    result = json.loads((marker.parent / "evaluate_test.json").read_text())
    line = {"name": run["name"], "seed": run["seed"], "seconds": run["seconds"],
            "eval_seconds": round(time.time() - start), "split": "test", "step": result["step"],
            "command": run["command"].replace("llm.train", "llm.evaluate", 1) + " --split=test",
            **{f"eval/{k}": v for k, v in result.items()
               if k not in ("step", "split", "corpus")}}
    with RESULTS.open("a") as f:
      f.write(json.dumps(line) + "\n")
    print(f"{run['name']} seed {run['seed']}: " + ", ".join(
        f"{k} {v:.3f}" for k, v in line.items() if k.startswith("eval/")))


if __name__ == "__main__":
  main(*sys.argv[1:])
