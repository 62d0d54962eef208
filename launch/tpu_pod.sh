#!/usr/bin/env bash
# A Cloud TPU VM slice: (create it or reuse it,) copy this checkout to every host, install, run the
# same llm.train command on all hosts (jax.distributed finds its peers; the output of every host
# streams back through ssh), (delete it).
#   launch/tpu_pod.sh [--dry-run] [--create=TYPE] [--delete] NAME ZONE CONFIG WORKDIR [--config.key=value ...]
#   --create=TYPE  create the slice if it does not exist: v4-32, v5e-64 (= v5litepod-64), v5p-128,
#                  v6e-16, ... (TPU generation - chips or cores, as gcloud names them)
#   --delete       delete the slice when the run ends (also when it fails)
#   --dry-run      print the commands instead of running them
# WORKDIR must be a path every host sees at the same place (a shared NFS / Filestore mount):
# checkpoints are written by all hosts together. Object-store URLs (gs://) are not supported yet.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0 create="" create_given=0 delete=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --create=*) create=${1#*=} create_given=1; shift ;;
    --delete) delete=1; shift ;;
    -*) echo "error: unknown option $1 (expected --dry-run, --create=TYPE, --delete)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 4 ]; then
  echo "error: usage: launch/tpu_pod.sh [--dry-run] [--create=TYPE] [--delete] NAME ZONE CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
name=$1 zone=$2 config=$3 workdir=$4; shift 4

# gcloud's accelerator type and the TPU VM image it runs.
accelerator="" version=""
if [ "$create_given" = 1 ]; then
  generation=${create%-*} size=${create##*-}
  case "$size" in ''|*[!0-9]*|0*) size="" ;; esac
  case "$generation" in
    v4) accelerator=v4-$size version=tpu-ubuntu2204-base ;;
    v5e|v5litepod) accelerator=v5litepod-$size version=v2-alpha-tpuv5-lite ;;
    v5p) accelerator=v5p-$size version=v2-alpha-tpuv5 ;;
    v6e) accelerator=v6e-$size version=v2-alpha-tpuv6e ;;
    *) size="" ;;
  esac
  if [ -z "$size" ] || [ "$create" = "$generation" ]; then
    echo "error: --create=$create is not a TPU type this launcher knows; use v4-N, v5e-N (v5litepod-N), v5p-N or v6e-N, e.g. --create=v4-32" >&2
    exit 2
  fi
fi

archive=/tmp/llm-$(git rev-parse --short HEAD 2>/dev/null || echo worktree).tar.gz
q() { printf '%q' "$1"; }
sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }   # single-quoted, for the remote shell
overrides=""; if [ $# -gt 0 ]; then overrides=$(printf ' %q' "$@"); fi
train="cd ~/llm && .venv/bin/python -m llm.train --distributed --config=$(q "$config") --workdir=$(q "$workdir")$overrides"
install="rm -rf ~/llm && mkdir -p ~/llm && tar xzf ~/$(basename "$archive") -C ~/llm && cd ~/llm && bash scripts/setup.sh && .venv/bin/python -m pip install -q -r requirements-tpu.txt"
gc="gcloud compute tpus tpu-vm"
steps=()
if [ -n "$create" ]; then
  steps+=("$gc describe $(q "$name") --zone=$(q "$zone") >/dev/null 2>&1 || $gc create $(q "$name") --zone=$(q "$zone") --accelerator-type=$accelerator --version=$version")
fi
steps+=("git archive --format=tar.gz -o $archive HEAD")
steps+=("$gc scp $archive $(q "$name"):~/ --zone=$(q "$zone") --worker=all")
steps+=("$gc ssh $(q "$name") --zone=$(q "$zone") --worker=all --command=$(sq "$install")")
steps+=("$gc ssh $(q "$name") --zone=$(q "$zone") --worker=all --command=$(sq "$train")")
cleanup="$gc delete $(q "$name") --zone=$(q "$zone") --quiet"

if [ "$dry" = 1 ]; then
  printf '%s\n' "${steps[@]}"
  if [ "$delete" = 1 ]; then echo "$cleanup"; fi
  exit 0
fi
if [ "$delete" = 1 ]; then trap 'eval "$cleanup"' EXIT; fi
for step in "${steps[@]}"; do
  echo "+ $step" >&2
  eval "$step"
done
