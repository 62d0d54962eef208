"""The benchmark scripts keep working: each runs in its seconds-long smoke mode."""
import json
import math
import subprocess
import sys

from helpers import ROOT


def test_pipeline_checkpoint_benchmark_smoke():
  proc = subprocess.run([sys.executable, "experiments/benchmarks/pipeline_checkpoint.py",
                         "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  assert [r.split(" | ")[0] for r in rows] == ["| config", "| gpt_tiny", "| bert_tiny", "| config",
                                               "| bert_tiny", "| state", rows[-1].split(" | ")[0]]
  assert rows[4].endswith("% |") and rows[-1].endswith("% |")


def test_train_step_benchmark_smoke():
  proc = subprocess.run([sys.executable, "experiments/benchmarks/train_step.py", "--smoke"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| gpt")]
  frameworks = [r[1] for r in rows]
  expected = ["ours", "hf_flax", "torch"] if (ROOT / ".venv-hf").exists() else ["ours", "torch"]
  assert frameworks == expected, proc.stdout
  assert rows[0][-1] == "1.00x |"   # ours against itself
  assert all(float(r[2].replace(",", "")) > 0 and r[4].endswith("%") for r in rows)


def test_accelerator_step_benchmark_smoke(tmp_path):
  """The GPU benchmark's code path, on CPU: both models, ours (XLA attention) and PyTorch."""
  out = tmp_path / "rows.jsonl"
  proc = subprocess.run([sys.executable, "experiments/benchmarks/accelerator_step.py", "--smoke",
                         f"--json={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(r["model"], r["framework"]) for r in rows] == [
      ("gpt", "ours"), ("gpt", "torch"), ("bert", "ours"), ("bert", "torch")], proc.stdout
  for r in rows:
    assert r["tokens_per_s"] > 0 and 0 < r["mfu_measured"], r
    # Freshly initialised: every target about equally likely (BERT adds NSP's two classes).
    chance = math.log(r["vocab"]) + (math.log(2) if r["model"] == "bert" else 0.0)
    assert abs(r["first_loss"] - chance) < 0.3, r
  assert sum(line.startswith("| gpt | ") for line in proc.stdout.splitlines()) == 2


def test_accelerator_step_knows_the_published_peaks():
  sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))
  import accelerator_step
  assert accelerator_step.published_peak("NVIDIA H200") == ("h200", 989)
  assert accelerator_step.published_peak("NVIDIA H100 80GB HBM3") == ("h100", 989)
  assert accelerator_step.published_peak("TPU v5 lite") == ("v5e", 197)
  assert accelerator_step.published_peak("cpu") == (None, None)
