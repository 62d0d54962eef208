"""Sweep reports (python -m llm.report is the command): the members' final figures (read by
llm.sweep_results) as a markdown table, mean ± std over seeds for each setting of the swept keys,
and PNG plots: every member's training and validation loss curves, a metric against the swept
setting with error bars, and the power laws the sweep's get_report names. Needs no JAX."""
import json
import math
import pathlib

import numpy as np

from llm.sweep_results import (fit_points, fit_power_law, load_rows, load_sweep, setting_sizes,
                               summarize)

def _cell(mean, std):
  return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


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
