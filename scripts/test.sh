#!/usr/bin/env bash
# Installs everything, then runs the test suite on 8 fake CPU devices (see tests/conftest.py) in
# LLM_TEST_WORKERS pytest-xdist worker processes (default 2: one per core here; a test file stays
# on one worker, so its module fixtures are built once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m pytest -q -n "${LLM_TEST_WORKERS:-2}" --dist loadfile tests "$@"
