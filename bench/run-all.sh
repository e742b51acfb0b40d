#!/usr/bin/env bash
# The whole benchmark suite in one command, under 10 minutes at these defaults on the 2-core
# machine of bench/README.md once the release build exists:
#
#   size      bench/size.sh        stripped binary size
#   readyz    bench/readyz.sh      /readyz and /metrics under wrk against hello_hyper
#   idle      bench/idle.sh        idle CPU and RSS, system check only (DURATION=30 here)
#   compare   bench/compare.py     vigil vs blackbox_exporter + postgres_exporter
#   scale     bench/scale.py       postgres with 500 connections; /metrics at 1,000 upstreams
#   detect    bench/detect.py      fault -> /readyz 503 and repair -> 200
#   postgres  bench/postgres.sh    the postgres check's load on the database (LOAD_SECONDS=30 here)
#
# Optional: SOAK=1 adds bench/soak.py (SOAK_SECONDS, default 600, on top of the 10 minutes);
# BLACKBOX1000=1 adds bench/upstreams.sh (1,000 upstreams at 1 s vs blackbox_exporter, ~2 min).
# ONLY="detect readyz" runs a subset, in the order above. Each script also runs alone.
#
# Prerequisites are checked first (and how to install each missing one is printed). The release
# binaries are built once, first; the scripts' own builds are then no-ops. Every script's output
# goes to the terminal and to target/bench/run-all-<timestamp>/<name>.txt; the suite goes on when
# one script fails, and exits 1 at the end if any did.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
# The Python scripts leave no bench/__pycache__ behind.
export PYTHONDONTWRITEBYTECODE=1

# --- prerequisites
missing=()
need() { # command, install hint
    command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2")
}
need cargo "rustup (https://rustup.rs): Rust 1.95 or newer (Debian 12's cargo package is too old)"
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need ss "apt-get install -y iproute2"
need python3 "apt-get install -y python3"
need setpriv "apt-get install -y util-linux"
need psql "apt-get install -y postgresql-client"
need pgbench "apt-get install -y postgresql-contrib (PostgreSQL 15 on Debian 12)"
need prometheus-blackbox-exporter "apt-get install -y prometheus-blackbox-exporter"
need prometheus-postgres-exporter "apt-get install -y prometheus-postgres-exporter"
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    missing+=("initdb: apt-get install -y postgresql (initdb and pg_ctl under /usr/lib/postgresql/*/bin)")
fi
if ((${#missing[@]} > 0)); then
    echo "missing prerequisites:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi

out=target/bench/run-all-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
echo "run-all: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); outputs in $out"
echo "=== build"
build_release --bin vigil --example hello_hyper 2>&1 | tail -3

# name|command (run through env so that per-script settings stay on their line)
suite=(
    "size|bench/size.sh"
    "readyz|bench/readyz.sh"
    "idle|env DURATION=${IDLE_DURATION:-30} bench/idle.sh"
    "compare|python3 bench/compare.py"
    "scale|python3 bench/scale.py"
    "detect|python3 bench/detect.py"
    "postgres|env LOAD_SECONDS=${PG_LOAD_SECONDS:-30} bench/postgres.sh"
)
[[ ${BLACKBOX1000:-0} == 1 ]] && suite+=("upstreams|bench/upstreams.sh")
[[ ${SOAK:-0} == 1 ]] && suite+=("soak|python3 bench/soak.py")

selected() { [[ -z ${ONLY:-} ]] || [[ " $ONLY " == *" $1 "* ]]; }

start=$(date +%s)
results=()
failed=0
missed=0
for entry in "${suite[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    selected "$name" || continue
    echo
    echo "=== $name: $cmd   (load $(cut -d' ' -f1-3 /proc/loadavg))"
    t0=$(date +%s)
    # Word splitting of $cmd is intended: each entry is a plain command line without quotes.
    # shellcheck disable=SC2086
    if $cmd 2>&1 | tee "$out/$name.txt"; then status=ok; else status="FAILED (exit ${PIPESTATUS[0]})"; failed=1; fi
    # A script that ran but missed a target says so in its output (MISSED, OVER BOUND, NOT FLAT).
    if [[ $status == ok ]] && grep -qE 'MISSED|OVER BOUND|NOT FLAT' "$out/$name.txt"; then
        status="ran, target MISSED"
        missed=1
    fi
    results+=("$(printf '%-9s %5ds  %-22s load after: %s' "$name" $(($(date +%s) - t0)) "$status" "$(cut -d' ' -f1-3 /proc/loadavg)")")
done
total=$(($(date +%s) - start))

echo
echo "=== summary ($out)"
printf '  %s\n' "${results[@]}"
budget=600
[[ ${SOAK:-0} == 1 ]] && budget=$((budget + ${SOAK_SECONDS:-600} + 60))
[[ ${BLACKBOX1000:-0} == 1 ]] && budget=$((budget + 150))
printf '  total %ds (%d min %02d s); budget %ds: %s\n' "$total" $((total / 60)) $((total % 60)) "$budget" \
    "$( ((total <= budget)) && echo met || echo OVER)"
((missed)) && echo "  a target was missed: see the script's output above (a busy machine misses p99 first)"
# 1: a script failed; 2: every script ran but a target was missed.
((failed)) && exit 1
((missed)) && exit 2
exit 0
