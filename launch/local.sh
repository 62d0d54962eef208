#!/usr/bin/env bash
# One machine, all its devices (CPU, one or more GPUs, or a single TPU VM).
#   launch/local.sh configs/gpt_tiny.py workdirs/gpt_tiny [--config.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1 workdir=$2; shift 2
exec .venv/bin/python -m llm.train --config="$config" --workdir="$workdir" "$@"
