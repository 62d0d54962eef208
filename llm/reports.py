"""Sweep reports (python -m llm.report is the command): the members' final figures as a markdown
table, mean ± std over seeds for each setting of the swept keys, and PNG plots: every member's
training and validation loss curves, and a metric against the swept setting with error bars.

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


def _cell(mean, std):
  return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def setting_sizes(members):
  """{setting (as summarize's rows hold it, items in order): how many members it has}."""
  keys = swept_keys(members)
  sizes = {}
  for _, overrides, run_dir in members:
    setting = tuple((k, setting_value(overrides, run_dir, k)) for k in keys)
    sizes[setting] = sizes.get(setting, 0) + 1
  return sizes


def markdown_table(rows, metrics=None, sizes=None):
  """The table of `summarize`'s rows: swept keys, runs, then mean ± std of each metric. With
  `sizes` (setting_sizes'), a setting some of whose members have no figures (not run yet, or
  failed: a diverged run) shows "runs of members"."""
  keys = list(rows[0][0]) if rows else []
  metrics = metrics or sorted({m for _, _, stats in rows for m in stats})
  lines = ["| " + " | ".join([*keys, "runs", *metrics]) + " |",
           "|" + "---|" * (len(keys) + 1 + len(metrics))]
  for setting, count, stats in rows:
    size = (sizes or {}).get(tuple(setting.items()), count)
    cells = [str(setting[k]) for k in keys] + [f"{count} of {size}" if size > count
                                               else str(count)]
    cells += [_cell(*stats[m]) if m in stats else "–" for m in metrics]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")   # files only, no display
  import matplotlib.pyplot as plt
  return plt


def plot_curves(members, path):
  """Training loss (left) and validation loss (right) against the step, one line per member;
  returns the figure (saved to `path`)."""
  plt = _pyplot()
  fig, (train, valid) = plt.subplots(1, 2, figsize=(11, 4.2))
  for name, _, run_dir in members:
    rows = load_rows(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    for ax, key in ((train, "train/loss"), (valid, "eval/loss")):
      points = [(r["step"], r[key]) for r in rows if key in r]
      if points:
        ax.plot(*zip(*points), marker="." if key == "eval/loss" else None, label=name)
  from matplotlib.ticker import MaxNLocator
  for ax, what in ((train, "training"), (valid, "validation")):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(f"{what} loss")
    ax.grid(alpha=0.3)
  train.legend(fontsize="small")
  fig.suptitle(f"{pathlib.Path(path).parent.name}: loss per member")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig


def plot_metric(rows, metric, path, along=None, log_x=False):
  """`metric`'s mean (± std over seeds) for each setting: with `along` (a numeric swept key),
  against its values with one line per setting of the other keys (on a log x axis with
  `log_x`); against the swept value when one numeric key is swept; else one bar per setting.
  Returns the figure (saved to `path`)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  rows = [r for r in rows if metric in r[2]]
  means = [r[2][metric][0] for r in rows]
  stds = [0.0 if math.isnan(r[2][metric][1]) else r[2][metric][1] for r in rows]
  keys = list(rows[0][0]) if rows else []
  numeric = len(keys) == 1 and all(isinstance(r[0][keys[0]], (int, float))
                                    and not isinstance(r[0][keys[0]], bool) for r in rows)
  if along:
    _lines_along(ax, rows, means, stds, along)
    ax.set_xscale("log" if log_x else "linear")
    ax.set_xlabel(along)
  elif numeric:
    order = np.argsort([r[0][keys[0]] for r in rows])
    ax.errorbar([rows[i][0][keys[0]] for i in order], [means[i] for i in order],
                yerr=[stds[i] for i in order], marker="o", capsize=4)
    ax.set_xlabel(keys[0])
  else:
    labels = [", ".join(f"{k}={v}" for k, v in r[0].items()) or "all runs" for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4)
    ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize="small")
    ax.set_xlabel(", ".join(keys) or "setting")
  ax.set_ylabel(metric)
  runs = sorted({r[1] for r in rows})
  ax.set_title(f"{metric}: mean ± std over {'/'.join(map(str, runs))} run(s) per setting")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig


def _lines_along(ax, rows, means, stds, along):
  """One error-bar line per setting of the keys other than `along`, over `along`'s values."""
  lines = {}
  for (setting, _, _), mean, std in zip(rows, means, stds):
    if along not in setting:
      raise ValueError(f"get_report's along={along!r}: the sweep does not set it; "
                       f"it sets {sorted(setting)}")
    rest = ", ".join(f"{k}={v}" for k, v in setting.items() if k != along) or "all runs"
    lines.setdefault(rest, []).append((setting[along], mean, std))
  for label, points in lines.items():
    xs, ys, errors = zip(*sorted(points))
    ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=4, label=label)
  ax.legend(fontsize="small")


def plot_against(rows, x, x_label, path):
  """One line per setting: the mean (± std over seeds) of metric x[v] at each value v (e.g. the
  perplexity evaluated at each length); returns the figure (saved to `path`)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  values = sorted(x, key=float)
  for setting, count, stats in rows:
    points = [(float(v), *stats[x[v]]) for v in values if x[v] in stats]
    if not points:
      continue
    xs, means, stds = zip(*points)
    label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "all runs"
    ax.errorbar(xs, means, yerr=[0.0 if math.isnan(s) else s for s in stds], marker="o",
                capsize=4, label=f"{label} ({count} run{'s' * (count != 1)})")
  ax.set_xticks([float(v) for v in values], [str(v) for v in values])
  ax.set_xlabel(x_label)
  measured = sorted({x[v].rsplit("/", 1)[-1] for v in values})
  ax.set_ylabel(", ".join(measured))
  ax.set_title(f"{', '.join(measured)} against {x_label}: mean ± std over seeds")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig


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


def plot_fit(points, fit, path):
  """`fit["y"]` against `fit["x"]` on log axes, one series per value of `fit["by"]` with its
  fitted power law; returns (the figure, saved to `path`, and {value: (alpha, se, c, n)})."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  fits = {}
  for value, pts in points.items():
    xs, ys = zip(*sorted(pts))
    line = ax.plot(xs, ys, "o", label=None)[0]
    if len(set(xs)) > 1:
      alpha, se, c = fit_power_law(xs, ys)
      fits[value] = (alpha, se, c, len(xs))
      grid = np.geomspace(min(xs), max(xs), 50)
      ax.plot(grid, c * grid ** -alpha, "-", color=line.get_color(),
              label=f"{fit['by']}={value}: α = {alpha:.3f} ± {se:.3f}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(fit.get("x_label", fit["x"]))
  ax.set_ylabel(fit.get("y_label", fit["y"]))
  ax.set_title(f"{fit['y']} ∝ x^-α, fitted per {fit['by']} (least squares in log-log)")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig, fits


def _fit_section(members, fit, path):
  """The markdown of one power-law fit (its plot written to `path`)."""
  _, fits = plot_fit(fit_points(members, fit["x"], fit["y"], fit["by"]), fit, path)
  published = fit.get("published")
  lines = [f"### {fit['y']} against {fit.get('x_label', fit['x'])}", "",
           f"| {fit['by']} | points | α | c |", "|---|---|---|---|"]
  for value, (alpha, se, c, n) in fits.items():
    lines.append(f"| {value} | {n} | {_cell(alpha, se)} | {c:.4g} |")
  if published:
    lines += ["", f"Published: α = {published[0]} ({published[1]})."]
  return "\n".join(lines + ["", f"![{path.stem}]({path.name})", ""])


def write_report(directory, metric=None):
  """<directory>/results.md, curves.png and <metric>.png (its "/" written "_": eval_loss.png),
  against.png when the sweep's get_report names an "x", and fit_<i>.png with a table for each
  power law it names in "fits" ({"x", "y", "by"} keys or metrics, optional "x_label",
  "published": [exponent, source]); <metric>.png is drawn against the swept key get_report
  names as "along" (on a log axis with "log_x": true). Returns the markdown. `metric`: default
  get_report's, else eval/loss."""
  directory = pathlib.Path(directory)
  members = load_sweep(directory)
  settings = json.loads((directory / "sweep.json").read_text()).get("report", {})
  metric = metric or settings.get("metric", "eval/loss")
  rows = summarize(members)
  if not any(count for _, count, _ in rows):
    raise ValueError(f"no member of {directory} has evaluated yet; run llm.sweep first")
  known = sorted({m for _, _, stats in rows for m in stats})
  if metric not in known:
    raise ValueError(f"--metric={metric!r}: the members report {known}")
  for name in settings.get("x", {}).values():
    if name not in known:
      raise ValueError(f"get_report's x metric {name!r}: the members report {known}")
  plot_curves(members, directory / "curves.png")
  chart = directory / f"{metric.replace('/', '_')}.png"
  plot_metric(rows, metric, chart, along=settings.get("along"),
              log_x=settings.get("log_x", False))
  against = ""
  if settings.get("x"):
    plot_against(rows, settings["x"], settings.get("x_label", "value"), directory / "against.png")
    against = f"\n![against {settings.get('x_label', 'value')}](against.png)\n"
  fits = "".join("\n" + _fit_section(members, fit, directory / f"fit_{i}.png")
                 for i, fit in enumerate(settings.get("fits", [])))
  text = (f"# {directory.name}\n\n{len(members)} members (`sweep.json`); mean ± sample std "
          f"over the runs of each setting (runs: those with figures, of the setting's "
          f"members).\n\n{markdown_table(rows, sizes=setting_sizes(members))}\n"
          f"![loss per member](curves.png)\n\n![{metric}]({chart.name})\n{against}{fits}")
  (directory / "results.md").write_text(text)
  return text
