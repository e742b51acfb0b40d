#!/usr/bin/env bash
# The postgres check's load on the database: over LOAD_SECONDS (default 60) of a steady agent
# at the default configuration ([postgres] with only a url: interval 5s, timeout 2s,
# failure_threshold 2, pool_size 2), the connections that application_name=vigil holds (sampled
# each second, max) and the statements it runs per minute (pg_stat_statements, filtered on the
# agent's role), against the agent's own run count.
#
# Detection and recovery (kill -9 of the postmaster -> /readyz 503, restart -> 200) moved to
# bench/detect.py, which times them next to the other faults.
#
# The cluster runs on 127.0.0.1 only, as the postgres user through setpriv when run as root.
# Every wait is bounded; a trap stops vigil and the cluster and removes the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

LOAD_SECONDS=${LOAD_SECONDS:-60}
PASSWORD=bench-gw-pw
OUT=target/bench/postgres-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

initdb_path=$(command -v initdb || true)
if [[ -z $initdb_path ]]; then
    initdb_path=$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -1)
fi
[[ -n $initdb_path ]] || { echo "initdb not found: apt-get install postgresql" >&2; exit 1; }
PG_BIN=$(dirname "$(readlink -f "$initdb_path")")
AS_PG=()
if [[ $(id -u) == 0 ]]; then
    AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

DIR=$(mktemp -d /tmp/vigil-bench-pg.XXXXXX)
DATA=$DIR/data
VIGIL_PID=
cleanup() {
    [[ -n $VIGIL_PID ]] && stop_pid "$VIGIL_PID" 5
    timeout 30 "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
chmod 755 "$DIR"
[[ $(id -u) == 0 ]] && chown postgres: "$DIR"

PGPORT=$(free_port)
printf '%s\n' "bench-superuser-pw" >"$DIR/pw"
timeout 120 "${AS_PG[@]}" "$PG_BIN/initdb" -D "$DATA" -U postgres --pwfile="$DIR/pw" \
    --auth-local=trust --auth-host=scram-sha-256 >"$OUT/initdb.log" 2>&1
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = 'all'
CONF

pg_start() {
    timeout 60 "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 50 start >/dev/null
}
psql_su() {
    timeout 20 psql -X -q -At -h "$DIR" -p "$PGPORT" -U postgres -d postgres -c "$1"
}
now_ms() { date +%s%3N; }

pg_start
psql_su "CREATE ROLE gateway LOGIN PASSWORD '$PASSWORD'"
psql_su "CREATE DATABASE gateway OWNER gateway"
psql_su "CREATE EXTENSION pg_stat_statements"

build_release --bin vigil >"$OUT/build.log" 2>&1
VPORT=$(free_port)
cat >"$OUT/vigil.toml" <<TOML
listen = "127.0.0.1:$VPORT"
[postgres]
url = "postgres://gateway:$PASSWORD@127.0.0.1:$PGPORT/gateway"
TOML
"${CLEAN_ENV[@]}" target/release/vigil run --config "$OUT/vigil.toml" >"$OUT/vigil.log" 2>&1 &
VIGIL_PID=$!
READYZ=http://127.0.0.1:$VPORT/readyz
wait_http "$READYZ" "$VIGIL_PID" 30

# readyz_code: the HTTP status of /readyz (000 when it does not answer).
readyz_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$READYZ" || true; }
# wait_code CODE SECONDS: polls /readyz every 10 ms until CODE; prints nothing, fails at the limit.
wait_code() {
    local code=$1 limit_ms=$(($2 * 1000)) start
    start=$(now_ms)
    while [[ $(readyz_code) != "$code" ]]; do
        (($(now_ms) - start > limit_ms)) && { echo "/readyz not $code within $2 s" >&2; return 1; }
        sleep 0.01
    done
}

# Load.
wait_code 200 30
sleep 6 # let a full interval pass after the first run
runs() {
    curl -s --max-time 2 "http://127.0.0.1:$VPORT/metrics" |
        awk '/^vigil_check_runs_total\{check="postgres"/ { s += $2 } END { print s + 0 }'
}
psql_su "SELECT pg_stat_statements_reset()" >/dev/null
runs0=$(runs)
max_conns=0
for ((s = 0; s < LOAD_SECONDS; s++)); do
    n=$(psql_su "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vigil'")
    ((n > max_conns)) && max_conns=$n
    sleep 1
done
runs1=$(runs)
statements=$(psql_su "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'gateway'")
psql_su "SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 60) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'gateway' ORDER BY calls DESC" >"$OUT/statements.txt"
per_min=$(awk -v n="$statements" -v s="$LOAD_SECONDS" 'BEGIN { printf "%.1f", n * 60 / s }')
runs_min=$(awk -v a="$runs0" -v b="$runs1" -v s="$LOAD_SECONDS" 'BEGIN { printf "%.1f", (b - a) * 60 / s }')
echo "connections held by application_name=vigil: max ${max_conns} (pool_size 2 + 1 kept = 3 allowed)"
echo "statements per minute by the agent's role: ${per_min} over ${LOAD_SECONDS} s (${runs_min} runs per minute)"
echo "statements:"; sed 's/^/  /' "$OUT/statements.txt"
echo "other load on the machine (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "raw output: $OUT"
