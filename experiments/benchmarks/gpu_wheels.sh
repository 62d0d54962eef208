#!/usr/bin/env bash
# .whl: the packages `llm` imports that the lent GPU machine's image lacks (it has JAX with CUDA,
# flax, optax, orbax, sentencepiece, torch, transformers; nothing can be fetched there), as wheels
# for its Python 3.12 on x86-64. Run here, where pip works; then one device call runs
# experiments/benchmarks/gpu.sh with `.whl` carried (see the benchmarks README).
#   bash experiments/benchmarks/gpu_wheels.sh [--python-version=3.12] [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
version=3.12
[[ "${1:-}" == --python-version=* ]] && { version="${1#*=}"; shift; }
dir="${1:-.whl}"
exclude=$(git rev-parse --git-path info/exclude)   # a worktree's .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$dir/" "$exclude" 2>/dev/null || echo "/$dir/" >> "$exclude"
rm -rf "$dir" && mkdir -p "$dir"
pip=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version"
     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir")
# What `import llm.train` loads (tensorflow itself is not: TFDS imports it only to build data),
# less what the image has; requirements.txt's versions, and .venv's for what those pull in.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }   # this pip config's noise
quiet "${pip[@]}" grain==0.2.18 array-record==0.8.6 ml-collections==1.1.0 tensorflow-datasets==4.9.10 \
  importlib-resources==7.1.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 \
  immutabledict==4.3.1 toml==0.10.2 portpicker==1.6.0
# promise ships only as a source archive: build its (pure Python) wheel here.
quiet python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dir" promise==2.3
ls "$dir"
du -sh "$dir"
