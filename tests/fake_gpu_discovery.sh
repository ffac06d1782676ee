#!/usr/bin/env bash
# Fake Spark GPU discovery script for tests on machines without GPUs.
#
# Prints {"name": "gpu", "addresses": [...]} with SPARKERAS_FAKE_GPUS addresses
# (default 2). With SPARKERAS_FAKE_GPU_STATE naming a folder, every call gets
# the next block of addresses (the first call "0","1", the second "2","3", ...),
# as two machines' GPUs would be told apart by their host: local-cluster
# workers share one host, and Spark would otherwise hand out "0" on both.
set -euo pipefail

count="${SPARKERAS_FAKE_GPUS:-2}"
first=0
if [ -n "${SPARKERAS_FAKE_GPU_STATE:-}" ]; then
  mkdir -p "${SPARKERAS_FAKE_GPU_STATE}"
  # mkdir is atomic: the n-th call to create "call-n" owns block n.
  block=0
  until mkdir "${SPARKERAS_FAKE_GPU_STATE}/call-${block}" 2>/dev/null; do
    block=$((block + 1))
  done
  first=$((block * count))
fi
addresses=""
for ((index = first; index < first + count; index++)); do
  addresses+="${addresses:+, }\"${index}\""
done
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
