#!/usr/bin/env bash
# Size of the release binary. The release profile in Cargo.toml already strips it
# (strip = true, lto = "fat", codegen-units = 1).
# Target (issue): stripped release binary under 8 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

build_release --bin vigil
bin=target/release/vigil
bytes=$(stat -c %s "$bin")
awk -v b="$bytes" 'BEGIN { printf "target/release/vigil: %d bytes = %.2f MiB\n", b, b / 1048576 }'
if command -v file >/dev/null; then file -b "$bin" | sed 's/^/  /'; fi
if ((bytes < 8 * 1024 * 1024)); then echo "target < 8 MiB: met"; else echo "target < 8 MiB: MISSED"; fi
