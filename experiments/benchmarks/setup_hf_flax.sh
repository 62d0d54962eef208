#!/usr/bin/env bash
# .venv-hf: the project's .venv plus transformers 4.57.6, the last release with Flax models, for
# experiments/benchmarks/train_step.py. Its own site-packages come first; everything else (jax,
# flax, optax, torch) is read from .venv through a .pth file, so both sides run the same JAX.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] || { echo "run bash scripts/setup.sh first" >&2; exit 1; }
[ -x .venv-hf/bin/python ] || python3.11 -m venv .venv-hf
main_site=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
hf_site=$(.venv-hf/bin/python -c "import site; print(site.getsitepackages()[0])")
echo "$main_site" > "$hf_site/llm-main.pth"
.venv-hf/bin/python -m pip install -q --no-deps transformers==4.57.6 huggingface-hub==0.36.2 \
  tokenizers==0.22.2
.venv-hf/bin/python -c "import transformers; print('transformers', transformers.__version__)"
