#!/usr/bin/env bash
# Installs everything, then pretrains the default experiment (small GPT, CPU) into workdirs/gpt_tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m llm.train --config=configs/gpt_tiny.py --workdir=workdirs/gpt_tiny "$@"
