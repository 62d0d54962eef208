"""The launchers' dry runs print exactly the commands they would run, and bad options are one
line. (launch/local.sh also really runs 2 processes in test_multiprocess.py.)"""
import shlex
import subprocess

import pytest

from helpers import ROOT


def launch(script, *args, env=None):
  import os
  environment = {k: v for k, v in os.environ.items()
                 if not k.startswith("SLURM_") and k != "XLA_FLAGS"}
  return subprocess.run(["bash", str(ROOT / "launch" / script), *args], cwd=ROOT, text=True,
                        capture_output=True, env={**environment, **(env or {})}, timeout=60)


def test_local_one_and_several_processes():
  one = launch("local.sh", "--dry-run", "configs/gpt_tiny.py", "runs/a b",
               "--config.total_steps=10")
  assert one.returncode == 0, one.stderr
  assert shlex.split(one.stdout) == [".venv/bin/python", "-m", "llm.train",
                                     "--config=configs/gpt_tiny.py", "--workdir=runs/a b",
                                     "--config.total_steps=10"]
  two = launch("local.sh", "--dry-run", "--processes=2", "--devices=4", "configs/bert_tiny.py",
               "runs/b", env={"LLM_PORT": "23456"})
  assert two.returncode == 0, two.stderr
  lines = two.stdout.splitlines()
  assert len(lines) == 2
  for index, line in enumerate(lines):
    assert shlex.split(line) == [
        "env", "XLA_FLAGS=--xla_force_host_platform_device_count=4",
        "JAX_COORDINATOR_ADDRESS=127.0.0.1:23456", "JAX_NUM_PROCESSES=2",
        f"JAX_PROCESS_ID={index}", ".venv/bin/python", "-m", "llm.train", "--distributed",
        "--config=configs/bert_tiny.py", "--workdir=runs/b"]
  # The caller's other XLA flags stay; the device count is --devices'.
  kept = launch("local.sh", "--dry-run", "--devices=4", "c", "w", env={
      "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=8"})
  assert shlex.split(kept.stdout)[:2] == ["env", "XLA_FLAGS=--xla_force_host_platform_device_count"
                                          "=4 --xla_backend_optimization_level=0"], kept.stdout


def test_tpu_pod_creates_copies_installs_runs_and_deletes():
  proc = launch("tpu_pod.sh", "--dry-run", "--create=v5e-64", "--delete", "pod1", "us-west4-a",
                "configs/gpt_tiny.py:size=small", "/mnt/shared/gpt2", "--config.mesh.fsdp=8")
  assert proc.returncode == 0, proc.stderr
  steps = [shlex.split(line) for line in proc.stdout.splitlines()]
  gc = ["gcloud", "compute", "tpus", "tpu-vm"]
  assert steps[0][:5] == gc + ["describe"] and "||" in steps[0]
  create = steps[0][steps[0].index("||") + 1:]
  assert create == gc + ["create", "pod1", "--zone=us-west4-a",
                         "--accelerator-type=v5litepod-64", "--version=v2-alpha-tpuv5-lite"]
  archive = steps[1][-2]
  assert steps[1] == ["git", "archive", "--format=tar.gz", "-o", archive, "HEAD"]
  assert steps[2] == gc + ["scp", archive, "pod1:~/", "--zone=us-west4-a", "--worker=all"]
  assert steps[3][:8] == gc + ["ssh", "pod1", "--zone=us-west4-a", "--worker=all"]
  assert "requirements-tpu.txt" in steps[3][8]
  run = steps[4][8]
  assert run.startswith("--command=cd ~/llm && ")
  assert shlex.split(run.split("&& ", 1)[1]) == [
      ".venv/bin/python", "-m", "llm.train", "--distributed",
      "--config=configs/gpt_tiny.py:size=small", "--workdir=/mnt/shared/gpt2",
      "--config.mesh.fsdp=8"]
  assert steps[5] == gc + ["delete", "pod1", "--zone=us-west4-a", "--quiet"]
  # Without --create/--delete: reuse the slice, keep it.
  reuse = launch("tpu_pod.sh", "--dry-run", "pod1", "z", "configs/gpt_tiny.py", "/w")
  assert [shlex.split(l)[0] for l in reuse.stdout.splitlines()] == ["git", "gcloud", "gcloud",
                                                                     "gcloud"]


def test_slurm_per_node_and_per_gpu():
  node = launch("slurm.sbatch", "--dry-run", "configs/gpt_tiny.py", "/shared/r",
                "--config.mesh.fsdp=8")
  assert node.returncode == 0, node.stderr
  assert shlex.split(node.stdout) == ["srun", "--ntasks-per-node=1", ".venv/bin/python", "-m",
                                      "llm.train", "--distributed", "--config=configs/gpt_tiny.py",
                                      "--workdir=/shared/r", "--config.mesh.fsdp=8"]
  gpu = launch("slurm.sbatch", "--dry-run", "--per-gpu", "configs/gpt_tiny.py", "/shared/r",
               env={"SLURM_GPUS_ON_NODE": "4"})
  words = shlex.split(gpu.stdout)
  assert words[:5] == ["srun", "--ntasks-per-node=4", "--gpus-per-task=1", "bash", "-c"]
  assert words[5] == 'JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID exec "$@"'
  assert words[7:] == [".venv/bin/python", "-m", "llm.train", "--distributed",
                       "--config=configs/gpt_tiny.py", "--workdir=/shared/r"]


def test_slurm_sweep_runs_the_array_tasks_member():
  task = launch("slurm_sweep.sbatch", "--dry-run", "configs/gpt_tiny.py", "/shared/seeds",
                "--config.total_steps=10", env={"SLURM_ARRAY_TASK_ID": "2"})
  assert task.returncode == 0, task.stderr
  assert shlex.split(task.stdout) == [".venv/bin/python", "-m", "llm.sweep",
                                      "--config=configs/gpt_tiny.py", "--workdir=/shared/seeds",
                                      "--member=2", "--config.total_steps=10"]


@pytest.mark.fault
@pytest.mark.parametrize("script,args,message", [
    ("tpu_pod.sh", ["--dry-run", "--create=v9-8", "p", "z", "c", "w"],
     "--create=v9-8 is not a TPU type this launcher knows"),
    ("tpu_pod.sh", ["--dry-run", "p", "z"], "usage: launch/tpu_pod.sh"),
    ("local.sh", ["--processes=0", "c", "w"], "--processes=0 must be a positive integer"),
    ("local.sh", ["--gpus=2", "c", "w"], "unknown option --gpus=2"),
    ("local.sh", ["--devices=0", "c", "w"], "--devices=0 must be a positive integer"),
    ("local.sh", ["--processes=2", "c", "README.md"], "workdir README.md is a file"),
    ("tpu_pod.sh", ["--dry-run", "--create=v4-0", "p", "z", "c", "w"],
     "--create=v4-0 is not a TPU type this launcher knows"),
    ("slurm.sbatch", ["--dry-run"], "usage: sbatch"),
    ("slurm_sweep.sbatch", ["--dry-run", "c", "w"], "SLURM_ARRAY_TASK_ID is not set"),
    ("local.sh", ["--dry-run", "--processes=abc", "c", "w"], "--processes=abc must be a positive"),
    ("local.sh", ["--dry-run", "--processes=08", "c", "w"], "--processes=08 must be a positive "
                                                            "integer, at most 256"),
    # Once a loop of 10^20 commands: the launcher never answered.
    ("local.sh", ["--dry-run", "--processes=99999999999999999999", "c", "w"],
     "--processes=99999999999999999999 must be a positive integer, at most 256"),
    ("local.sh", ["--dry-run", "--processes=257", "c", "w"], "at most 256 (processes on this "
                                                             "machine)"),
    ("local.sh", ["--dry-run", "--devices=", "c", "w"], "--devices= must be a positive integer"),
    ("local.sh", ["--dry-run", "--devices=-4", "c", "w"], "--devices=-4 must be a positive"),
    ("local.sh", ["--dry-run", "--devices=99999", "c", "w"], "--devices=99999 must be a positive "
                                                             "integer, at most 4096"),
    ("local.sh", ["--dry-run", "c"], "usage: launch/local.sh"),
    ("tpu_pod.sh", ["--dry-run", "--create=", "p", "z", "c", "w"],
     "--create= is not a TPU type this launcher knows"),
    ("tpu_pod.sh", ["--dry-run", "--create=v4", "p", "z", "c", "w"],
     "--create=v4 is not a TPU type this launcher knows"),
    ("tpu_pod.sh", ["--dry-run", "--create=v4-08", "p", "z", "c", "w"],
     "--create=v4-08 is not a TPU type"),
    ("tpu_pod.sh", ["--dry-run", "--zone=z", "p", "z", "c", "w"], "unknown option --zone=z"),
    ("slurm.sbatch", ["--gpus=8", "c", "w"], "unknown option --gpus=8 (expected --dry-run, "
                                             "--per-gpu)"),
    ("slurm_sweep.sbatch", ["--member=1", "c", "w"], "unknown option --member=1"),
])
def test_bad_launcher_options_are_one_line(script, args, message):
  proc = launch(script, *args)
  assert proc.returncode != 0
  assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.fault
def test_an_array_index_that_is_no_member_index_is_one_line():
  proc = launch("slurm_sweep.sbatch", "--dry-run", "c", "w", env={"SLURM_ARRAY_TASK_ID": "abc"})
  assert proc.returncode != 0
  assert proc.stderr.startswith("error: SLURM_ARRAY_TASK_ID=abc is not a member index (0, 1, "
                                "...)") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
