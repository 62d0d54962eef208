"""What a sweep's members measured, read from their run directories (llm.reports draws and
tables it): each member's final figures, mean ± std over seeds for each setting of the swept
keys, and power-law fits of one figure against another.

Reads what llm.sweep and the runs wrote: <sweep>/sweep.json (members and their overrides), each
member's metrics.jsonl (the last line with eval/ figures is its final evaluation) and its
evaluate*.json and generate_*.json files (llm.evaluate's and llm.generate --name's, as
"<file stem>/<metric>"). Needs no JAX."""
import json
import math
import pathlib

import numpy as np

# The member override that only replicates a setting: members that differ in it alone are one
# row of the table, their figures averaged.
REPLICATE_KEY = "seed"


def load_rows(path):
  """The JSON lines of a metrics.jsonl (a cut or unreadable line, as a crash leaves, skipped)."""
  rows = []
  for line in pathlib.Path(path).read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except ValueError:
      continue
  return rows


def latest_config(run_dir):
  """The config a run last started with: its newest config.resume-<step>.json (a resume writes
  one; a larger total_steps shows there), else config.json; None before it started."""
  run_dir = pathlib.Path(run_dir)
  resumes = sorted(run_dir.glob("config.resume-*.json"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1]))
  path = resumes[-1] if resumes else run_dir / "config.json"
  return json.loads(path.read_text()) if path.is_file() else None


def final_figures(run_dir, nested=True):
  """{metric: value} of a run: its last eval/ figures in metrics.jsonl with the model/ sizes its
  first line holds, and the numbers of its evaluate*.json and generate_*.json files; and those
  of the runs in its subdirectories (a sweep's downstream fine-tunes) as "<subdirectory>/...".
  A run whose config (latest_config) names a later total_steps than its last evaluation, one
  stopped or failed on the way, has none: its figures are not final."""
  run_dir = pathlib.Path(run_dir)
  figures = {}
  if (run_dir / "metrics.jsonl").is_file():
    rows = load_rows(run_dir / "metrics.jsonl")
    for row in reversed(rows):
      scores = {k: v for k, v in row.items() if k.startswith("eval/")}
      if scores:
        config = latest_config(run_dir)
        if config and row.get("step") != config.get("total_steps"):
          return {}
        figures.update(scores)
        break
    if figures:   # a run that has evaluated: its size beside its scores
      figures.update({k: v for row in rows[:1] for k, v in row.items() if k.startswith("model/")})
  for path in sorted([*run_dir.glob("evaluate*.json"), *run_dir.glob("generate_*.json")]):
    result = json.loads(path.read_text())
    figures.update({f"{path.stem}/{k}": v for k, v in result.items()
                    if isinstance(v, (int, float)) and k != "step"})
  for sub in sorted(p for p in run_dir.iterdir() if (p / "config.json").is_file()) if (
      nested and run_dir.is_dir()) else []:
    figures.update({f"{sub.name}/{k}": v for k, v in final_figures(sub, nested=False).items()
                    if not k.startswith("model/")})
  return figures


def load_sweep(directory):
  """[(member name, its settings, its run directory)] of <directory>/sweep.json: a member's
  settings are its overrides and its values of the keys other members override (recorded when
  the sweep started), so that a member that has not run yet still has its place in a table."""
  directory = pathlib.Path(directory)
  if not (directory / "sweep.json").is_file():
    raise FileNotFoundError(f"{directory} has no sweep.json: give the --workdir of an llm.sweep "
                            f"run")
  members = json.loads((directory / "sweep.json").read_text())["members"]
  return [(m["name"], {**m.get("settings", {}), **m["overrides"]}, directory / m["name"])
          for m in members]


def swept_keys(members):
  """The override keys whose values differ between members, seeds left out, in first-seen
  order."""
  keys = []
  for _, overrides, _ in members:
    for key in overrides:
      if key != REPLICATE_KEY and key not in keys:
        keys.append(key)
  return [k for k in keys if len({repr(o.get(k)) for _, o, _ in members}) > 1]


def setting_value(overrides, run_dir, key):
  """The member's value of `key`: its override, else what its run's config.json holds."""
  if key in overrides:
    return overrides[key]
  path = pathlib.Path(run_dir) / "config.json"
  node = json.loads(path.read_text()) if path.is_file() else {}
  for part in key.split("."):
    node = node.get(part) if isinstance(node, dict) else None
  return node


def summarize(members):
  """One row per setting of the swept keys: (setting {key: value}, number of runs with figures,
  {metric: (mean, std)}); std is the sample standard deviation (NaN for one run). Members
  without figures (not run yet) are not counted: a setting none of whose members has run shows
  0 runs and no figures."""
  keys = swept_keys(members)
  groups = {}
  for _, overrides, run_dir in members:
    setting = tuple((k, setting_value(overrides, run_dir, k)) for k in keys)
    figures = final_figures(run_dir)
    groups.setdefault(setting, [])
    if figures:
      groups[setting].append(figures)
  rows = []
  for setting, runs in groups.items():
    metrics = sorted({k for run in runs for k in run})
    stats = {}
    for metric in metrics:
      values = np.array([run[metric] for run in runs if metric in run], np.float64)
      std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
      stats[metric] = (float(values.mean()), std)
    rows.append((dict(setting), len(runs), stats))
  return rows


def setting_sizes(members):
  """{setting (as summarize's rows hold it, items in order): how many members it has}."""
  keys = swept_keys(members)
  sizes = {}
  for _, overrides, run_dir in members:
    setting = tuple((k, setting_value(overrides, run_dir, k)) for k in keys)
    sizes[setting] = sizes.get(setting, 0) + 1
  return sizes


def member_value(figures, overrides, run_dir, key):
  """A member's `key`: one of its figures (a metric), else its setting of that config key."""
  return figures[key] if key in figures else setting_value(overrides, run_dir, key)


def fit_power_law(xs, ys):
  """Least squares of log y = log c - alpha log x over the points: (alpha, its standard error,
  c); the error is NaN with fewer than 3 points."""
  lx, ly = np.log(np.asarray(xs, np.float64)), np.log(np.asarray(ys, np.float64))
  slope, intercept = np.polyfit(lx, ly, 1)
  se = math.nan
  if len(lx) > 2:
    residuals = ly - (slope * lx + intercept)
    se = math.sqrt(residuals @ residuals / (len(lx) - 2) / ((lx - lx.mean()) ** 2).sum())
  return -slope, se, math.exp(intercept)


def fit_points(members, x, y, by):
  """{value of `by`: [(x, y) of each member with that value and both figures]}."""
  points = {}
  for _, overrides, run_dir in members:
    figures = final_figures(run_dir)
    if y not in figures:
      continue
    key, x_value = (member_value(figures, overrides, run_dir, k) for k in (by, x))
    for name, value in ((by, key), (x, x_value)):
      if value is None:
        raise ValueError(f"get_report's fit: {run_dir.name} has no figure or config key {name!r}; "
                         f"it reports {sorted(figures)}")
    points.setdefault(key, []).append((float(x_value), float(figures[y])))
  return dict(sorted(points.items(), key=lambda item: item[0]))
