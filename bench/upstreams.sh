#!/usr/bin/env bash
# 1,000 upstreams at a 1 s interval against a local server (bench/hello_hyper.rs), measured
# twice in one run, one after the other against the same target server:
#
#   1. vigil with 1,000 [[upstream]] checks: CPU (utime+stime from /proc/PID/stat over
#      DURATION), RSS (VmRSS, VmHWM), probes done (from vigil_check_runs_total), and the
#      scheduling lag: how late each run started against its plan, from the scheduler's
#      trace event "Run started" (lag_us), logged with RUST_LOG=vigil::scheduler=trace.
#      The logging cost (1,000 JSON lines a second) is inside vigil's CPU figure.
#   2. prometheus-blackbox-exporter probing the same 1,000 targets, driven by
#      bench/scrape_loop.py (a Prometheus-like loop: each target every 1 s, spread over the
#      interval, kept-alive connections): the exporter's CPU and RSS the same way.
#
# Reported per 1,000 probes: CPU seconds; and RSS at this load. Targets (issue): scheduling
# lag p99 under 50 ms; vigil below half of blackbox_exporter on CPU and RSS.
#
# The two are measured one after the other, not concurrently, so that they do not compete
# for the same 2 cores; the load generator (python) is a separate process and not counted.
#
# Environment: N (default 1000), DURATION (seconds measured, default 30), WARMUP (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

N=${N:-1000}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-10}
for v in N DURATION WARMUP; do
    [[ ${!v} =~ ^[1-9][0-9]{0,4}$ ]] || { echo "$v must be a positive number, got '${!v}'" >&2; exit 2; }
done
BLACKBOX=$(command -v prometheus-blackbox-exporter || true)
[[ -n $BLACKBOX ]] || { echo "apt-get install -y prometheus-blackbox-exporter" >&2; exit 1; }

build_release --bin vigil --example hello_hyper

out=target/bench/upstreams-$(date +%Y%m%dT%H%M%S)
mkdir -p "$out"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks_per_s=$(getconf CLK_TCK)
# utime + stime (clock ticks) of every thread of PID; fields after the command name.
cpu_ticks() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$rest"
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

hello_port=$(free_port)
"${CLEAN_ENV[@]}" target/release/examples/hello_hyper "127.0.0.1:$hello_port" >"$out/hello.log" 2>&1 &
hello_pid=$!
pids+=("$hello_pid")
wait_http "http://127.0.0.1:$hello_port/" "$hello_pid" 30

# ---- vigil ----
port=$(free_port)
{
    printf 'listen = "127.0.0.1:%s"\n\n' "$port"
    for ((i = 0; i < N; i++)); do
        printf '[[upstream]]\nname = "u%d"\nurl = "http://127.0.0.1:%s/u%d"\ninterval = "1s"\ntimeout = "1s"\n\n' \
            "$i" "$hello_port" "$i"
    done
} >"$out/vigil.toml"
"${CLEAN_ENV[@]}" RUST_LOG=info,vigil::scheduler=trace target/release/vigil run --config "$out/vigil.toml" \
    >"$out/vigil.log" 2>&1 &
vigil_pid=$!
pids+=("$vigil_pid")
wait_http "http://127.0.0.1:$port/livez" "$vigil_pid" 30

runs() {
    curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
        awk '/^vigil_check_runs_total\{check="upstream:/ { s += $2 } END { printf "%d\n", s }'
}
sleep "$WARMUP"
lines0=$(wc -l <"$out/vigil.log")
runs0=$(runs)
t0=$(cpu_ticks "$vigil_pid")
sleep "$DURATION"
t1=$(cpu_ticks "$vigil_pid")
runs1=$(runs)
lines1=$(wc -l <"$out/vigil.log")
v_rss=$(status_kib "$vigil_pid" VmRSS)
v_hwm=$(status_kib "$vigil_pid" VmHWM)
curl -fsS --max-time 5 "http://127.0.0.1:$port/readyz?verbose" | tail -n 3 >"$out/readyz-tail.txt" || true
stop_pid "$vigil_pid"

# The lag of the runs that started inside the measured window.
sed -n "$((lines0 + 1)),${lines1}p" "$out/vigil.log" | grep '"Run started"' >"$out/lag.jsonl" || true
lag=$(python3 - "$out/lag.jsonl" <<'EOF'
import json, sys
lags = sorted(json.loads(l).get("lag_us", 0) for l in open(sys.argv[1]))
if not lags:
    print("n=0"); sys.exit()
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] / 1000
print(f"n={len(lags)} p50={q(0.5):.2f}ms p99={q(0.99):.2f}ms max={lags[-1] / 1000:.2f}ms")
EOF
)
v_probes=$((runs1 - runs0))
v_cpu=$(awk -v d=$((t1 - t0)) -v hz="$ticks_per_s" 'BEGIN { printf "%.2f", d / hz }')

# ---- blackbox_exporter ----
bport=$(free_port)
cat >"$out/blackbox.yml" <<'EOF'
modules:
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
EOF
"${CLEAN_ENV[@]}" "$BLACKBOX" --config.file="$out/blackbox.yml" --web.listen-address="127.0.0.1:$bport" \
    --log.level=warn >"$out/blackbox.log" 2>&1 &
bb_pid=$!
pids+=("$bb_pid")
wait_http "http://127.0.0.1:$bport/metrics" "$bb_pid" 30
python3 bench/scrape_loop.py "127.0.0.1:$bport" "http://127.0.0.1:$hello_port/u" "$N" 1 "$DURATION" "$WARMUP" \
    >"$out/scrape.json" &
loop_pid=$!
pids+=("$loop_pid")
sleep "$WARMUP"
b0=$(cpu_ticks "$bb_pid")
sleep "$DURATION"
b1=$(cpu_ticks "$bb_pid")
b_rss=$(status_kib "$bb_pid" VmRSS)
b_hwm=$(status_kib "$bb_pid" VmHWM)
wait "$loop_pid" || true
b_probes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["scrapes"])' "$out/scrape.json")
b_cpu=$(awk -v d=$((b1 - b0)) -v hz="$ticks_per_s" 'BEGIN { printf "%.2f", d / hz }')

per_k() { awk -v c="$1" -v p="$2" 'BEGIN { if (p > 0) printf "%.3f", c / p * 1000; else print "nan" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
v_cpu_k=$(per_k "$v_cpu" "$v_probes")
b_cpu_k=$(per_k "$b_cpu" "$b_probes")

{
    echo "upstreams=$N interval=1s measured=${DURATION}s after ${WARMUP}s warm-up ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%-16s %8s %10s %14s %10s %10s\n' "" probes "cpu s" "cpu s/1k probes" "RSS MiB" "peak MiB"
    printf '%-16s %8s %10s %14s %10s %10s\n' vigil "$v_probes" "$v_cpu" "$v_cpu_k" "$(mib "$v_rss")" "$(mib "$v_hwm")"
    printf '%-16s %8s %10s %14s %10s %10s\n' blackbox "$b_probes" "$b_cpu" "$b_cpu_k" "$(mib "$b_rss")" "$(mib "$b_hwm")"
    echo "vigil CPU share of one core: $(awk -v c="$v_cpu" -v d="$DURATION" 'BEGIN { printf "%.1f%%", c / d * 100 }')"
    echo "vigil scheduling lag: $lag (target p99 < 50ms)"
    echo "blackbox scrape loop: $(cat "$out/scrape.json")"
    awk -v v="$v_cpu_k" -v b="$b_cpu_k" 'BEGIN { printf "CPU per 1k probes: vigil/blackbox = %.2f (target < 0.5)\n", v / b }'
    awk -v v="$v_rss" -v b="$b_rss" 'BEGIN { printf "RSS: vigil/blackbox = %.2f (target < 0.5)\n", v / b }'
} | tee "$out/summary.txt"
