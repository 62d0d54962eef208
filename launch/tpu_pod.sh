#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command on every host; jax.distributed finds its peers.
#   launch/tpu_pod.sh TPU_NAME ZONE configs/bert_tiny.py:size=base /mnt/shared/run [--config.key=value ...]
# The workdir must be a local path on a filesystem all hosts share (e.g. NFS/Filestore mounted at
# the same place); object-store URLs (gs://) are not supported yet. The repository must be
# checked out at ~/llm on every host; this script installs it there with the TPU extra.
set -euo pipefail
tpu=$1 zone=$2 config=$3 workdir=$4; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  cd ~/llm && python3.11 -m venv .venv && .venv/bin/pip install -q -r requirements.txt 'jax[tpu]==0.10.2' &&
  .venv/bin/python -m llm.train --distributed --config=$config --workdir=$workdir $*"
