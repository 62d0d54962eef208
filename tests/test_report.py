"""Sweep reports: the table's means and stds against hand-computed ones, the plots' series and
files, and the report command."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from llm import reports, sweep_results

from helpers import ROOT

# nsp=True: final validation losses 1, 2, 3 (mean 2, sample std 1); nsp=False: 4 and 6 (mean 5,
# std sqrt 2), its third seed not run yet.
FINAL = {(True, 0): 1.0, (True, 1): 2.0, (True, 2): 3.0, (False, 0): 4.0, (False, 1): 6.0}


@pytest.fixture
def sweep(tmp_path):
  members = []
  for nsp in (True, False):
    for seed in range(3):
      name = f"nsp={nsp},seed={seed}"
      members.append({"name": name, "overrides": {"nsp": nsp, "seed": seed}})
      if (nsp, seed) in FINAL:
        run = tmp_path / name
        run.mkdir()
        rows = [{"step": s, "train/loss": 9.0 - s} for s in (1, 2, 3)]
        rows[-1]["eval/loss"] = FINAL[nsp, seed]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                           + '{"step": 4, "tra')   # a cut last line
  (tmp_path / "sweep.json").write_text(json.dumps({"members": members}))
  return tmp_path


def test_means_and_stds_over_seeds_are_the_hand_computed_ones(sweep):
  rows = sweep_results.summarize(sweep_results.load_sweep(sweep))
  assert [(setting, count) for setting, count, _ in rows] == [({"nsp": True}, 3),
                                                              ({"nsp": False}, 2)]
  assert rows[0][2]["eval/loss"] == pytest.approx((2.0, 1.0))
  assert rows[1][2]["eval/loss"] == pytest.approx((5.0, math.sqrt(2.0)))
  assert reports.markdown_table(rows).splitlines() == [
      "| nsp | runs | eval/loss |", "|---|---|---|", "| True | 3 | 2 ± 1 |",
      "| False | 2 | 5 ± 1.4 |"]


def test_one_run_has_no_std_and_unswept_keys_are_not_columns(tmp_path):
  members = [("a", {"seed": 0, "seq_len": 64}, tmp_path / "a")]
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1, "eval/loss": 2.5}\n')
  (tmp_path / "a" / "evaluate_test.json").write_text('{"step": 1, "loss": 2.75}')
  rows = sweep_results.summarize(members)
  assert reports.markdown_table(rows).splitlines()[2] == "| 1 | 2.5 | 2.75 |"
  assert sweep_results.swept_keys(members) == []


def test_a_member_not_run_yet_is_grouped_by_its_recorded_settings(tmp_path):
  """Only the sinusoidal members override embed_scale; the others' value comes from the
  settings sweep.json recorded, not from a config.json they do not have yet."""
  members = []
  for position, scale in (("sinusoidal", True), ("alibi", False), ("alibi", False)):
    seed = len(members)
    overrides = {"model.position": position, **({"model.embed_scale": True} if scale else {}),
                 "seed": seed}
    members.append({"name": f"m{seed}", "overrides": overrides,
                    "settings": {"model.position": position, "model.embed_scale": scale,
                                 "seed": seed}})
  (tmp_path / "m1").mkdir()
  (tmp_path / "m1" / "metrics.jsonl").write_text('{"step": 1, "eval/loss": 2.0}\n')
  (tmp_path / "sweep.json").write_text(json.dumps({"members": members}))
  loaded = sweep_results.load_sweep(tmp_path)
  table = reports.markdown_table(sweep_results.summarize(loaded), sizes=sweep_results.setting_sizes(loaded))
  assert table.splitlines()[2:] == ["| sinusoidal | True | 0 of 1 | – |",
                                    "| alibi | False | 1 of 2 | 2 |"]


def test_a_run_stopped_before_its_last_step_has_no_final_figures(tmp_path):
  """Its last evaluation (step 2 of 4) is not a result; a resume to a larger total_steps
  (config.resume-4.json) moves the goal."""
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text('{"total_steps": 4}')
  (run / "metrics.jsonl").write_text('{"step": 2, "eval/loss": 3.0}\n')
  (run / "evaluate_len64.json").write_text('{"step": 2, "loss": 3.5}')
  assert sweep_results.final_figures(run) == {}
  (run / "metrics.jsonl").write_text('{"step": 2, "eval/loss": 3.0}\n'
                                     '{"step": 4, "eval/loss": 2.0}\n')
  assert sweep_results.final_figures(run)["eval/loss"] == 2.0
  (run / "config.resume-4.json").write_text('{"total_steps": 6}')
  assert sweep_results.final_figures(run) == {}


def test_plots_have_a_series_per_member_and_are_png_files(sweep):
  members = sweep_results.load_sweep(sweep)
  fig = reports.plot_curves(members, sweep / "curves.png")
  train, valid = fig.axes
  assert len(train.get_lines()) == len(valid.get_lines()) == len(FINAL)   # the unrun one: none
  assert train.get_xlabel() == "step" and "nats" in train.get_ylabel() and train.get_title()
  fig = reports.plot_metric(sweep_results.summarize(members), "eval/loss", sweep / "loss.png")
  bars = fig.axes[0].patches
  assert [b.get_height() for b in bars] == pytest.approx([2.0, 5.0])
  assert fig.axes[0].get_xlabel() == "nsp" and fig.axes[0].get_ylabel() == "eval/loss"
  for name in ("curves.png", "loss.png"):
    with Image.open(sweep / name) as image:
      assert image.format == "PNG" and image.size[0] > 500
      image.verify()


def test_a_numeric_sweep_is_plotted_against_its_values(tmp_path):
  rows = [({"model.num_layers": 4}, 2, {"eval/loss": (3.0, 0.5)}),
          ({"model.num_layers": 2}, 2, {"eval/loss": (4.0, 0.25)})]
  fig = reports.plot_metric(rows, "eval/loss", tmp_path / "layers.png")
  ax = fig.axes[0]
  assert ax.get_xlabel() == "model.num_layers"
  x, y = ax.get_lines()[0].get_data()
  assert list(x) == [2, 4] and list(y) == [4.0, 3.0]   # sorted by the swept value


def test_a_metric_along_a_swept_key_is_one_line_per_other_setting(tmp_path):
  """get_report's along: accuracy against the label count, one line per start."""
  rows = [({"init": "minilm", "train_examples": 1000}, 3, {"acc": (0.9, 0.01)}),
          ({"init": "minilm", "train_examples": 100}, 3, {"acc": (0.6, 0.05)}),
          ({"init": "", "train_examples": 100}, 3, {"acc": (0.3, 0.1)}),
          ({"init": "", "train_examples": 1000}, 2, {"acc": (0.5, float("nan"))})]
  fig = reports.plot_metric(rows, "acc", tmp_path / "labels.png", along="train_examples",
                            log_x=True)
  ax = fig.axes[0]
  assert ax.get_xlabel() == "train_examples" and ax.get_xscale() == "log"
  lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}
  assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(lines)
  assert set(lines) == {"init=minilm", "init="}
  assert [list(v) for v in lines["init=minilm"].get_data()] == [[100, 1000], [0.6, 0.9]]
  assert [list(v) for v in lines["init="].get_data()] == [[100, 1000], [0.3, 0.5]]
  with pytest.raises(ValueError, match="along='seed'"):
    reports.plot_metric(rows, "acc", tmp_path / "x.png", along="seed")


def test_metrics_against_a_value_are_one_line_per_setting(tmp_path):
  """get_report's x: perplexity at three evaluation lengths, one line per position kind."""
  rows = [({"model.position": "rope"}, 3, {"eval/perplexity": (10.0, 1.0),
                                           "evaluate_len128/perplexity": (12.0, 1.5),
                                           "evaluate_len256/perplexity": (15.0, 2.0)}),
          ({"model.position": "learned"}, 1, {"eval/perplexity": (11.0, math.nan),
                                              "evaluate_len256/perplexity": (90.0, math.nan)})]
  x = {"64": "eval/perplexity", "256": "evaluate_len256/perplexity",
       "128": "evaluate_len128/perplexity"}
  fig = reports.plot_against(rows, x, "evaluation length (tokens)", tmp_path / "against.png")
  ax = fig.axes[0]
  lines = [bars.lines[0] for bars in ax.containers]   # each errorbar's data line
  assert [list(line.get_data()[0]) for line in lines] == [[64, 128, 256], [64, 256]]
  assert [list(line.get_data()[1]) for line in lines] == [[10.0, 12.0, 15.0], [11.0, 90.0]]
  assert ax.get_xlabel() == "evaluation length (tokens)" and ax.get_ylabel() == "perplexity"
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      "model.position=rope (3 runs)", "model.position=learned (1 run)"]
  with Image.open(tmp_path / "against.png") as image:
    assert image.format == "PNG"


def test_the_sweeps_report_settings_pick_the_metric_and_the_plot_against_a_value(sweep):
  plan = json.loads((sweep / "sweep.json").read_text())
  plan["report"] = {"metric": "eval/loss", "x": {"1": "eval/loss"}, "x_label": "one"}
  (sweep / "sweep.json").write_text(json.dumps(plan))
  text = reports.write_report(sweep)
  assert "![against one](against.png)" in text and (sweep / "against.png").is_file()
  plan["report"]["x"] = {"1": "eval/bleu"}
  (sweep / "sweep.json").write_text(json.dumps(plan))
  with pytest.raises(ValueError, match="get_report's x metric 'eval/bleu': the members report"):
    reports.write_report(sweep)


def test_power_law_fits_recover_the_exponent_and_its_error_as_scipy_does():
  from scipy import stats
  xs = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
  alpha, se, c = sweep_results.fit_power_law(xs, 7.0 * xs ** -0.076)
  assert (alpha, c) == pytest.approx((0.076, 7.0)) and se == pytest.approx(0.0, abs=1e-9)
  ys = 7.0 * xs ** -0.076 * np.array([1.02, 0.97, 1.01, 1.03, 0.98])
  alpha, se, _ = sweep_results.fit_power_law(xs, ys)
  reference = stats.linregress(np.log(xs), np.log(ys))
  assert alpha == pytest.approx(-reference.slope) and se == pytest.approx(reference.stderr)


def test_a_fit_section_plots_each_series_on_log_axes(tmp_path):
  members = []
  for steps in (100, 200):
    for width, params in ((64, 1e4), (128, 4e4), (256, 1.6e5)):
      name = f"w={width},s={steps}"
      run = tmp_path / name
      run.mkdir()
      loss = 20.0 * params ** (-0.1 if steps == 100 else -0.2)
      (run / "metrics.jsonl").write_text(
          json.dumps({"step": 1, "model/non_embedding_parameters": params}) + "\n"
          + json.dumps({"step": steps, "eval/loss": loss}) + "\n")
      members.append((name, {"model.embed_dim": width, "total_steps": steps}, run))
  fit = {"x": "model/non_embedding_parameters", "y": "eval/loss", "by": "total_steps",
         "x_label": "non-embedding parameters", "published": [0.076, "Kaplan et al. 2020"]}
  points = sweep_results.fit_points(members, fit["x"], fit["y"], fit["by"])
  assert sorted(points) == [100, 200] and len(points[100]) == 3
  fig, fits = reports.plot_fit(points, fit, tmp_path / "fit.png")
  assert fits[100][:2] == pytest.approx((0.1, 0.0), abs=1e-9)
  assert fits[200][0] == pytest.approx(0.2)
  ax = fig.axes[0]
  assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
  assert ax.get_xlabel() == "non-embedding parameters"
  text = reports._fit_section(members, fit, tmp_path / "fit_0.png")
  assert "| 100 | 3 | 0.1 ± " in text and "| 20 |" in text
  assert "Published: α = 0.076 (Kaplan et al. 2020)." in text


def report(workdir, *args):
  return subprocess.run([sys.executable, "-m", "llm.report", f"--workdir={workdir}", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_report_command_writes_the_table_and_plots(sweep):
  proc = report(sweep, "--metric=eval/loss")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| True | 3 | 2 ± 1 |" in proc.stdout
  assert "| False | 2 of 3 | 5 ± 1.4 |" in proc.stdout   # its third seed has not run
  assert "| True | 3 | 2 ± 1 |" in (sweep / "results.md").read_text()
  assert (sweep / "curves.png").is_file() and (sweep / "eval_loss.png").is_file()
  proc = report(sweep, "--metric=eval/bleu")
  assert proc.returncode == 1 and proc.stderr.strip() == (
      "error: --metric='eval/bleu': the members report ['eval/loss']"), proc.stderr


def test_a_folder_that_is_not_a_sweep_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no sweep.json"):
    reports.write_report(tmp_path)
  (tmp_path / "sweep.json").write_text(json.dumps({"members": [{"name": "a", "overrides": {}}]}))
  with pytest.raises(ValueError, match="no member of .* has evaluated yet"):
    reports.write_report(tmp_path)
