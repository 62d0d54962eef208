#!/usr/bin/env bash
# The one device call on a lent GPU machine (its image has JAX with CUDA, flax, optax, orbax,
# torch, transformers; .whl brings the rest: make it here with gpu_wheels.sh). From the session:
#   run(command="bash experiments/benchmarks/gpu.sh", carry=[".whl"], timeout_s=560)
# Writes accelerator_step.{log,json} and device.txt to $OUT (or ./gpu_out without one).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-gpu_out}"
mkdir -p "$out"
ls .whl/*.whl > /dev/null 2>&1 || { echo "no .whl here: run experiments/benchmarks/gpu_wheels.sh first and carry .whl" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true; } \
  | tee "$out/device.txt"
# Pre-flight, seconds: the versions that differ from our pins, and whether llm imports at all.
python3 - <<'PY' 2>&1 | tee "$out/preflight.txt"
import importlib.metadata as md
def version(name):
  try:
    return md.version(name)
  except md.PackageNotFoundError:
    return None
print({n: version(n) for n in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "protobuf",
                               "torch", "transformers")})
try:
  import llm.train  # noqa: F401
  print("import llm.train: ok")
except Exception as e:  # the benchmark's PyTorch rows still run
  print(f"import llm.train failed: {type(e).__name__}: {e}")
PY
# Both models, each alternating ours (cuDNN, XLA attention) and PyTorch; stop short of the
# call's limit so that whatever was printed comes back.
timeout "${BUDGET_S:-500}" python3 experiments/benchmarks/accelerator_step.py \
  --json="$out/accelerator_step.json" "$@" 2>&1 | tee "$out/accelerator_step.log"
