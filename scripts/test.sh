#!/usr/bin/env bash
# Installs everything, then runs the test suite on 8 fake CPU devices (see tests/conftest.py) in
# LLM_TEST_WORKERS pytest-xdist worker processes (default 2: one per core here; a test file stays
# on one worker, so its module fixtures are built once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# Set-up installs without byte-compiling (scripts/setup.sh): the suite compiles each module it
# imports once, and keeps it, even where the environment asks Python not to write bytecode.
env -u PYTHONDONTWRITEBYTECODE \
  .venv/bin/python -m pytest -q -n "${LLM_TEST_WORKERS:-2}" --dist loadfile tests "$@"
