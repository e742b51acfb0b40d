#!/usr/bin/env bash
# Runs every benchmark in order: /readyz throughput, idle cost, binary size.
# Each script builds what it needs (cargo's no-op when nothing changed) and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

for script in readyz idle size; do
    echo "=== bench/$script.sh"
    bench/"$script".sh
    echo
done
