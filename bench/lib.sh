# shellcheck shell=bash
# Helpers shared by the bench/*.sh scripts. Sourced, not run.
# Every wait here is bounded; every process started is recorded for the caller's trap.

# Prints a TCP port on 127.0.0.1 that nothing listens on (at most 50 tries).
free_port() {
    local port tries
    for ((tries = 0; tries < 50; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if [[ -z "$(ss -Htln "sport = :$port" 2>/dev/null)" ]]; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found after 50 tries" >&2
    return 1
}

# wait_http URL PID [SECONDS]: waits until URL answers 200 (at most SECONDS, default 20),
# failing early if PID has exited.
wait_http() {
    local url=$1 pid=$2 seconds=${3:-20} i
    for ((i = 0; i < seconds * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited before $url answered" >&2
            return 1
        fi
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$url did not answer 200 within ${seconds}s" >&2
    return 1
}

# stop_pid PID [SECONDS]: SIGTERM, wait at most SECONDS (default 10), then SIGKILL.
stop_pid() {
    local pid=$1 seconds=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < seconds * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A minimal environment for the processes under test, so that no VIGIL_*, DATABASE_URL or
# RUST_LOG of the caller changes the configuration measured. Use as
# `"${CLEAN_ENV[@]}" cmd args &` (not through a function: `$!` must be the process itself).
# shellcheck disable=SC2034  # used by the scripts that source this file
CLEAN_ENV=(env -i "PATH=$PATH" "HOME=${HOME:-/root}")

# Builds the release binaries, retrying a few times: others may be mid-edit in src/.
build_release() {
    local attempt
    for ((attempt = 1; attempt <= ${BUILD_ATTEMPTS:-5}; attempt++)); do
        if cargo build --release --locked "$@"; then
            return 0
        fi
        echo "build failed (attempt $attempt); retrying in 60s" >&2
        sleep 60
    done
    echo "build failed ${BUILD_ATTEMPTS:-5} times; giving up" >&2
    return 1
}

# Median of the numbers given as arguments (middle one; mean of the two middle ones if even).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
