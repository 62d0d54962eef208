#!/usr/bin/env bash
# One machine: one process driving all its devices (CPU, GPUs or a single TPU VM), or N processes
# of one --distributed run talking over 127.0.0.1 (CPU collectives: what a pod run does, on a
# laptop; logs in WORKDIR/process_<i>.log).
#   launch/local.sh [--dry-run] [--processes=N] [--devices=D] CONFIG WORKDIR [--config.key=value ...]
#   --processes=N   N processes (default 1); --devices=D fake CPU devices per process (CPU only)
#   --dry-run       print the commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0 processes=1 devices="" devices_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --processes=*) processes=${1#*=}; shift ;;
    --devices=*) devices=${1#*=} devices_given=1; shift ;;
    -*) echo "error: unknown option $1 (expected --dry-run, --processes=N, --devices=D)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "error: usage: launch/local.sh [--dry-run] [--processes=N] [--devices=D] CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
# A whole number from 1 to $2, without leading zeros (bash would read 08 as octal).
counts() { case "$1" in ''|*[!0-9]*|0*) return 1 ;; esac; [ "${#1}" -le 5 ] && [ "$1" -le "$2" ]; }
counts "$processes" 256 || { echo "error: --processes=$processes must be a positive integer, at most 256 (processes on this machine)" >&2; exit 2; }
if [ "$devices_given" = 1 ] && ! counts "$devices" 4096; then
  echo "error: --devices=$devices must be a positive integer, at most 4096 (fake CPU devices per process)" >&2; exit 2
fi
config=$1 workdir=$2; shift 2
python=${PYTHON:-.venv/bin/python}
quoted=""; if [ $# -gt 0 ]; then quoted=$(printf ' %q' "$@"); fi
env_devices=""
if [ -n "$devices" ]; then   # this device count, and the caller's other XLA flags as they were
  others=$(printf '%s' "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[^ ]*//g' | xargs)
  env_devices="XLA_FLAGS=$(printf %q "--xla_force_host_platform_device_count=$devices${others:+ $others}") "
fi
prefix=${env_devices:+env $env_devices}
if [ "$processes" = 1 ]; then
  cmd="${prefix}$python -m llm.train --config=$(printf %q "$config") --workdir=$(printf %q "$workdir")$quoted"
  if [ "$dry" = 1 ]; then echo "$cmd"; exit 0; fi
  eval exec "$cmd"
fi
port=${LLM_PORT:-$((20000 + RANDOM % 20000))}
cmds=()
for ((i = 0; i < processes; i++)); do
  cmds+=("env ${env_devices}JAX_COORDINATOR_ADDRESS=127.0.0.1:$port JAX_NUM_PROCESSES=$processes JAX_PROCESS_ID=$i $python -m llm.train --distributed --config=$(printf %q "$config") --workdir=$(printf %q "$workdir")$quoted")
done
if [ "$dry" = 1 ]; then
  printf '%s\n' "${cmds[@]}"
  exit 0
fi
if [ -e "$workdir" ] && [ ! -d "$workdir" ]; then
  echo "error: workdir $workdir is a file, not a directory; choose another WORKDIR" >&2; exit 2
fi
mkdir -p "$workdir"
pids=()
for ((i = 0; i < processes; i++)); do
  eval "${cmds[$i]}" > "$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
tail -n +1 -f "$workdir/process_0.log" --pid="${pids[0]}" &
status=0
for ((i = 0; i < processes; i++)); do
  wait "${pids[$i]}" || { code=$?; echo "process $i exited with $code (see $workdir/process_$i.log)" >&2; status=$code; }
done
exit $status
