#!/usr/bin/env bash
# Spark resource discovery script for NVIDIA GPUs.
#
# Prints the JSON Spark expects, e.g. {"name": "gpu", "addresses": ["0", "1"]},
# with the index of every GPU nvidia-smi lists (on YARN and Kubernetes the
# container shows only the GPUs it was given). Set it as
# spark.executor.resource.gpu.discoveryScript (and, on standalone workers,
# spark.worker.resource.gpu.discoveryScript).
set -euo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-discovery.sh: nvidia-smi is not on PATH on ${HOSTNAME:-this host}: install the" \
       "NVIDIA driver there, or drop the spark.*.resource.gpu.* settings." >&2
  exit 1
fi

indices=$(nvidia-smi --query-gpu=index --format=csv,noheader)
addresses=""
for index in ${indices}; do
  addresses+="${addresses:+, }\"${index}\""
done
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
