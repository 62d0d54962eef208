"""The benchmark scripts keep working: each runs in its seconds-long smoke mode."""
import subprocess
import sys

from conftest import ROOT


def test_pipeline_checkpoint_benchmark_smoke():
  proc = subprocess.run([sys.executable, "experiments/benchmarks/pipeline_checkpoint.py",
                         "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  assert [r.split(" | ")[0] for r in rows] == ["| config", "| gpt_tiny", "| bert_tiny", "| state",
                                               rows[-1].split(" | ")[0]]
  assert rows[-1].endswith("% |")


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
