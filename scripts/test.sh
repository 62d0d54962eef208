#!/usr/bin/env bash
# Installs everything, then runs the test suite on 8 fake CPU devices (see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m pytest -q tests "$@"
