"""Capacity planner: what a config needs on a mesh larger than this machine.

  python -m llm.plan --config=configs/bert_tiny.py:size=large --devices=256 --device_kind=v5e \
      --config.mesh.fsdp=16 --config.batch_size=1024 [--format=json]

The training step is compiled, not run, for `--devices` fake CPU devices laid out as
`config.mesh`, with the run's own shardings, so nothing is estimated that XLA can count:
  memory per device   XLA's memory analysis of the partitioned program: arguments (this device's
                      shards of params, optimizer state and batch) + temporaries at their peak
                      (activations, gradients) + outputs not aliased to donated inputs
  FLOPs per step      XLA's cost analysis (per device, x devices), beside the usual formula
                      6 N tokens + 12 L d seq tokens (N = weights in matmuls, L layers, d width)
  step time, MFU      a roofline on --device_kind: max(FLOPs / peak, least bytes moved /
                      memory bandwidth) per device, where the least bytes moved are the
                      params (read twice, written once), their gradients and the optimizer
                      state; the MFU it allows is the FLOP time's share of that
Peaks are the chips' published dense bf16 figures: an f32 run (model.dtype) gets far less on
TPUs. The CPU compiler's memory plan is close to, not equal to, what a TPU or GPU compiler does.
"""
import os
import sys


# Fake CPU devices take time and memory to set up, growing faster than their count (4,096: about
# 20 s and 0.6 GB here); past this many the planner would sit silent for many minutes.
MAX_DEVICES = 4096


def _use_fake_devices(argv):
  # Must happen before JAX starts its backend: the plan compiles for --devices CPU devices.
  count = next((a.split("=", 1)[1] if "=" in a else next(iter(argv[i + 1:i + 2]), None)
                for i, a in enumerate(argv) if a == "--devices" or a.startswith("--devices=")),
               None)
  if count and count.isdigit() and int(count) > MAX_DEVICES:
    raise SystemExit(f"error: --devices={count}: the planner compiles for that many fake CPU "
                     f"devices and plans at most {MAX_DEVICES}; per-device memory depends on the "
                     f"mesh's fsdp and tensor axes, not on how many data replicas there are, so "
                     f"plan {MAX_DEVICES} or fewer devices with the same mesh.fsdp and mesh.tensor")
  if count and count.isdigit() and int(count) > 1024:
    print(f"setting up {count} fake CPU devices ...", flush=True)
  if count and count.isdigit():
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={count}").strip()
  os.environ["JAX_PLATFORMS"] = "cpu"


if __name__ == "__main__":
  _use_fake_devices(sys.argv)

import json  # noqa: E402

from absl import app, flags  # noqa: E402

from llm import cli, runlog  # noqa: E402
from llm.planning import DEVICE_KINDS, plan  # noqa: E402

flags.DEFINE_integer("devices", None, "How many devices (chips) the run would use.")
flags.DEFINE_string("device_kind", "", "Chip for the step-time estimate: one of "
                    f"{', '.join(DEVICE_KINDS)}.")
flags.DEFINE_enum("format", "text", ["text", "json"], "text, or one JSON line at the end.")


def _gib(n):
  return f"{n / 2**30:,.2f} GiB"


def _report(r, config):
  lines = [
      f"{config.objective} model, {r['parameters']:,} parameters, on {r['devices']} devices, "
      f"mesh {r['mesh']}, global batch {config.batch_size} x {config.seq_len}",
      f"  per device: params {_gib(r['param_bytes_per_device'])}, optimizer state "
      f"{_gib(r['optimizer_bytes_per_device'])}; compiled step: arguments "
      f"{_gib(r['argument_bytes_per_device'])} + temporaries {_gib(r['temp_bytes_per_device'])}"
      f" + outputs {_gib(r['output_bytes_per_device'])} = {_gib(r['peak_bytes_per_device'])}",
      f"  FLOPs per step: {r['flops_per_step']:.3e} (XLA), {r['formula_flops_per_step']:.3e} "
      f"(6 N tokens + 12 L d seq tokens)"]
  if "device_kind" in r:
    lines.append(
        f"  on {r['device_kind']}: {'fits' if r['fits'] else 'does NOT fit'} in "
        f"{_gib(r['device_memory_bytes'])}; step >= {r['step_seconds_at_peak'] * 1e3:,.1f} ms "
        f"at peak ({r['tokens_per_sec_at_peak']:,.0f} tokens/s), MFU at most "
        f"{r['mfu_bound']:.0%} (roofline)")
  runlog.log("\n".join(lines))


def main(argv):
  cli.no_arguments(argv)
  f = flags.FLAGS

  def plan_and_report():
    result = plan(cli.FLAGS.config, f.devices, f.device_kind)
    _report(result, cli.FLAGS.config)
    return result
  result = cli.run(plan_and_report)
  if f.format == "json":
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
