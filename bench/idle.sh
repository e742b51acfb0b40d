#!/usr/bin/env bash
# Idle cost of the agent: release vigil with the default configuration (only the system
# check, default interval 5s) on a free loopback port, no traffic. After /livez answers, samples
# utime+stime of the process (all threads) from /proc/PID/stat, waits DURATION seconds, samples
# again: CPU % of one core = CPU seconds used / wall seconds. RSS (VmRSS) and its peak (VmHWM)
# come from /proc/PID/status at the end.
# Targets (issue): RSS under 8 MiB; CPU under 0.2% of one core, over 60 s.
#
# Environment: DURATION (seconds, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-60}
[[ $DURATION =~ ^[1-9][0-9]{0,4}$ ]] || { echo "DURATION must be a number of seconds, got '$DURATION'" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

build_release --bin vigil

out=target/bench/idle-$(date +%Y%m%dT%H%M%S)
mkdir -p "$out"
vigil_pid=
cleanup() {
    [[ -n $vigil_pid ]] && stop_pid "$vigil_pid"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port)
printf 'listen = "127.0.0.1:%s"\n' "$port" >"$out/vigil.toml"
"${CLEAN_ENV[@]}" target/release/vigil run --config "$out/vigil.toml" 2>"$out/vigil.log" &
vigil_pid=$!
wait_http "http://127.0.0.1:$port/livez" "$vigil_pid" 30

# utime + stime in clock ticks, of every thread of the process. Fields counted after the
# command name, which may itself hold spaces and parentheses.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$vigil_pid/stat")
    stat=${stat##*) }
    read -r -a fields <<<"$stat"
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    echo $((fields[11] + fields[12]))
}
# Finer, supplementary: on-CPU nanoseconds summed over the live threads (first field of
# /proc/PID/task/*/schedstat). Exact while the set of threads does not change; a thread that
# exits in between takes its time with it, which is why the thread counts are printed.
sched_ns() { cat /proc/"$vigil_pid"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d\n", s }'; }
thread_count() { find /proc/"$vigil_pid"/task -mindepth 1 -maxdepth 1 | wc -l; }
status_kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$vigil_pid/status"; }
now() { date +%s.%N; }

ticks_per_second=$(getconf CLK_TCK)
t0=$(now)
c0=$(cpu_ticks)
n0=$(sched_ns)
threads0=$(thread_count)
echo "vigil pid $vigil_pid on 127.0.0.1:$port, idle for ${DURATION}s (log: $out/vigil.log)"
sleep "$DURATION"
c1=$(cpu_ticks)
n1=$(sched_ns)
t1=$(now)
rss=$(status_kib VmRSS)
hwm=$(status_kib VmHWM)
anon=$(status_kib RssAnon)
file=$(status_kib RssFile)
threads=$(status_kib Threads)
kill -0 "$vigil_pid" 2>/dev/null || { echo "vigil exited during the measurement" >&2; exit 1; }

read -r wall cpu_s cpu_pct <<<"$(awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$ticks_per_second" \
    'BEGIN { w = t1 - t0; c = (c1 - c0) / hz; printf "%.2f %.2f %.3f\n", w, c, 100 * c / w }')"
echo "CPU:  ${cpu_s}s over ${wall}s wall = ${cpu_pct}% of one core ($((c1 - c0)) ticks at ${ticks_per_second}/s)"
awk -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v a="$threads0" -v b="$threads" 'BEGIN {
    printf "      threads on CPU (schedstat): %.2f ms = %.4f%% of one core (threads: %d at start, %d at end)\n",
        (n1 - n0) / 1e6, 100 * (n1 - n0) / 1e9 / (t1 - t0), a, b }'
awk -v r="$rss" -v h="$hwm" -v a="$anon" -v f="$file" -v n="$threads" 'BEGIN {
    printf "RSS:  %d KiB = %.2f MiB (anon %d KiB, file %d KiB); peak (VmHWM) %d KiB = %.2f MiB; %d threads\n",
        r, r / 1024, a, f, h, h / 1024, n }'
verdict() { if [[ $1 == 1 ]]; then echo met; else echo MISSED; fi; }
echo "target RSS < 8 MiB: $(verdict "$(awk -v r="$rss" 'BEGIN { print (r < 8192) }')")"
echo "target CPU < 0.2% of one core: $(verdict "$(awk -v p="$cpu_pct" 'BEGIN { print (p < 0.2) }')")"
if ((DURATION != 60)); then echo "note: measured over ${DURATION}s; the issue's figure is over 60s"; fi
