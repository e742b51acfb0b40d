#!/usr/bin/env bash
# /readyz and /metrics throughput and latency of vigil, side by side with a minimal hyper
# hello-world server (bench/hello_hyper.rs) in the same run: wrk -t1 -c64 -d10s --latency,
# alternating hello, readyz, metrics, hello, readyz, metrics, … (ROUNDS rounds each), then the
# medians and the ratios against hello.
# vigil runs a realistic small configuration: the system check plus UPSTREAMS (5) upstreams at the
# default interval, all pointing at hello_hyper, so that /metrics carries real series.
# Targets (issue): /readyz at least 80% of hello's requests/s, /readyz p99 under 2 ms.
# /metrics has no target: its ratio and p99 are reported.
#
# Environment: ROUNDS (3), DURATION (10s), CONNECTIONS (64), THREADS (1), WARMUP (2s, 0 = none),
# UPSTREAMS (5).
# Nothing is pinned: wrk shares the machine's cores with the server it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2s}
UPSTREAMS=${UPSTREAMS:-5}

command -v wrk >/dev/null || { echo "wrk not found (apt-get install -y wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

build_release --bin vigil --example hello_hyper

out=target/bench/readyz-$(date +%Y%m%dT%H%M%S)
mkdir -p "$out"
vigil_pid=
hello_pid=
cleanup() {
    [[ -n $hello_pid ]] && stop_pid "$hello_pid"
    [[ -n $vigil_pid ]] && stop_pid "$vigil_pid"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vigil_port=$(free_port)
hello_port=$(free_port)
while [[ $hello_port == "$vigil_port" ]]; do hello_port=$(free_port); done

# The default configuration (the system check, default interval) on a loopback port, plus
# UPSTREAMS upstreams at the default interval (5s), answered by hello_hyper.
{
    printf 'listen = "127.0.0.1:%s"\n' "$vigil_port"
    for ((i = 0; i < UPSTREAMS; i++)); do
        printf '\n[[upstream]]\nname = "u%d"\nurl = "http://127.0.0.1:%s/u%d"\n' "$i" "$hello_port" "$i"
    done
} >"$out/vigil.toml"
"${CLEAN_ENV[@]}" target/release/vigil run --config "$out/vigil.toml" 2>"$out/vigil.log" &
vigil_pid=$!
"${CLEAN_ENV[@]}" target/release/examples/hello_hyper "127.0.0.1:$hello_port" 2>"$out/hello.log" &
hello_pid=$!

vigil_url="http://127.0.0.1:$vigil_port/readyz"
metrics_url="http://127.0.0.1:$vigil_port/metrics"
hello_url="http://127.0.0.1:$hello_port/"
wait_http "$hello_url" "$hello_pid" 20
wait_http "$vigil_url" "$vigil_pid" 30   # 200 only once every check has run once
curl -fsS --max-time 2 -o "$out/metrics.txt" "$metrics_url"
metrics_bytes=$(stat -c %s "$out/metrics.txt")
metrics_series=$(grep -cv '^#' "$out/metrics.txt" || true)

# wrk output -> "requests_per_second p99_ms non2xx socket_errors"
parse_wrk() {
    awk '
        /^ *99%/ {
            v = $2
            if (v ~ /us$/) { sub(/us$/, "", v); p99 = v / 1000 }
            else if (v ~ /ms$/) { sub(/ms$/, "", v); p99 = v }
            else if (v ~ /s$/) { sub(/s$/, "", v); p99 = v * 1000 }
        }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
        END { printf "%s %s %d %d\n", rps, p99, non2xx, errors }
    ' "$1"
}

# CPU seconds: of one process (all threads), of the whole machine (busy and total), and of the
# shell's waited-for children (wrk). They tell whether something else ran during a round.
proc_cpu() {
    local stat fields
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a fields <<<"$stat"
    awk -v t=$((fields[11] + fields[12])) -v hz="$HZ" 'BEGIN { printf "%.2f\n", t / hz }'
}
machine_cpu() { # "busy steal total" from /proc/stat; busy = user nice system (irq and softirq
    # time, where loopback TCP is mostly processed, is not charged to any process and left out)
    awk -v hz="$HZ" '/^cpu / { b = $2 + $3 + $4; printf "%.2f %.2f %.2f\n", b / hz, $9 / hz, (b + $5 + $6 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
# `times` must run in this shell, not in a $(…) subshell, hence the file.
children_cpu() { times >"$out/times.txt"; awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$out/times.txt"; }
HZ=$(getconf CLK_TCK)
OTHER_LIMIT=5   # % of the machine taken by other processes (and by the hypervisor: steal)
disturbed=()

run_wrk() { # name url round
    local name=$1 url=$2 round=$3 file="$out/$1-$3.txt"
    local m0 m1 w0 w1 h0 h1 v0 v1 other steal
    children_cpu >"$out/w0"
    m0=$(machine_cpu) w0=$(<"$out/w0") h0=$(proc_cpu "$hello_pid") v0=$(proc_cpu "$vigil_pid")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$file"
    children_cpu >"$out/w1"
    m1=$(machine_cpu) w1=$(<"$out/w1") h1=$(proc_cpu "$hello_pid") v1=$(proc_cpu "$vigil_pid")
    read -r other steal < <(awk -v m0="$m0" -v m1="$m1" -v w0="$w0" -v w1="$w1" \
        -v h0="$h0" -v h1="$h1" -v v0="$v0" -v v1="$v1" 'BEGIN {
            split(m0, a, " "); split(m1, b, " "); total = b[3] - a[3]
            o = b[1] - a[1] - (w1 - w0) - (h1 - h0) - (v1 - v0)
            if (total <= 0) total = 1
            printf "%.1f %.1f\n", o < 0 ? 0 : 100 * o / total, 100 * (b[2] - a[2]) / total }')
    read -r rps p99 non2xx errors < <(parse_wrk "$file")
    printf '%-6s round %d  %10.0f req/s  p99 %7.3f ms  non-2xx %d  socket errors %d  other %4.1f%%  steal %4.1f%%\n' \
        "$name" "$round" "$rps" "$p99" "$non2xx" "$errors" "$other" "$steal"
    echo "$rps $p99 $non2xx $errors $other $steal" >"$file.parsed"
    if awk -v o="$other" -v s="$steal" -v l="$OTHER_LIMIT" 'BEGIN { exit !(o + s > l) }'; then disturbed+=("$name $round"); fi
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; hello $hello_url, vigil $vigil_url and $metrics_url"
echo "vigil: system check + $UPSTREAMS upstreams; /metrics is $metrics_bytes bytes, $metrics_series series"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "other: CPU used by processes other than wrk and the two servers; steal: taken by the hypervisor (% of the machine)"
echo "raw output in $out"
if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$hello_url" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$vigil_url" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$metrics_url" >/dev/null
fi
for ((round = 1; round <= ROUNDS; round++)); do
    run_wrk hello "$hello_url" "$round"
    run_wrk readyz "$vigil_url" "$round"
    run_wrk metrics "$metrics_url" "$round"
done

hello_rps=() hello_p99=() readyz_rps=() readyz_p99=() readyz_ratio=()
metrics_rps=() metrics_p99=() metrics_ratio=()
vigil_bad=0
for ((round = 1; round <= ROUNDS; round++)); do
    read -r h_rps h_p99 _ <"$out/hello-$round.txt.parsed"
    hello_rps+=("$h_rps") hello_p99+=("$h_p99")
    for name in readyz metrics; do
        read -r v_rps v_p99 v_non2xx v_errors _ <"$out/$name-$round.txt.parsed"
        declare -n rps_arr=${name}_rps p99_arr=${name}_p99 ratio_arr=${name}_ratio
        rps_arr+=("$v_rps") p99_arr+=("$v_p99")
        ratio_arr+=("$(awk -v v="$v_rps" -v h="$h_rps" 'BEGIN { printf "%.4f", v / h }')")
        unset -n rps_arr p99_arr ratio_arr
        vigil_bad=$((vigil_bad + v_non2xx + v_errors))
    done
done

m_hello_rps=$(median "${hello_rps[@]}")
m_hello_p99=$(median "${hello_p99[@]}")
m_vigil_rps=$(median "${readyz_rps[@]}")
m_vigil_p99=$(median "${readyz_p99[@]}")
m_ratio=$(median "${readyz_ratio[@]}")
m_metrics_rps=$(median "${metrics_rps[@]}")
m_metrics_p99=$(median "${metrics_p99[@]}")
m_metrics_ratio=$(median "${metrics_ratio[@]}")
pct() { awk -v r="$1" 'BEGIN { printf "%.1f%%", r * 100 }'; }

echo
echo "median of $ROUNDS rounds (ratio: median of the per-round ratios to hello of the same round):"
printf '  %-16s %10s  %11s  %s\n' "" "req/s" "p99" "of hello"
printf '  %-16s %10.0f  %8.3f ms  %s\n' "hello" "$m_hello_rps" "$m_hello_p99" "-"
printf '  %-16s %10.0f  %8.3f ms  %s\n' "vigil /readyz" "$m_vigil_rps" "$m_vigil_p99" "$(pct "$m_ratio")"
printf '  %-16s %10.0f  %8.3f ms  %s\n' "vigil /metrics" "$m_metrics_rps" "$m_metrics_p99" "$(pct "$m_metrics_ratio")"
echo "  /metrics answer: $metrics_bytes bytes, $metrics_series series (system + $UPSTREAMS upstreams)"
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
verdict() { if [[ $1 == 1 ]]; then echo met; else echo MISSED; fi; }
printf '  target /readyz throughput >= 80%% of hello: %s\n' \
    "$(verdict "$(awk -v r="$m_ratio" 'BEGIN { print (r >= 0.8) }')")"
printf '  target /readyz p99 < 2 ms: %s\n' "$(verdict "$(awk -v p="$m_vigil_p99" 'BEGIN { print (p < 2) }')")"
if ((${#disturbed[@]} > 0)); then
    printf '  WARNING: other processes (or steal) took more than %s%% of the machine during: %s.\n' \
        "$OTHER_LIMIT" "$(IFS=,; echo "${disturbed[*]}")"
    echo "  These figures are not reliable; run again on a quiet machine."
fi
if ((vigil_bad > 0)); then
    echo "  note: vigil had $vigil_bad non-2xx responses or socket errors over the rounds (see $out)"
fi
