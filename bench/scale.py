#!/usr/bin/env python3
"""Scale: the postgres check with 500 client connections in pg_stat_activity, and /metrics at
1,000 upstreams.

  python3 bench/scale.py            # about 1.5 minutes at the defaults, once built

Environment (defaults): WINDOW=12 (seconds measured per phase, as SUBWINDOWS=3 consecutive
windows whose median is reported), CONNECTIONS=500,
SCRAPES=20 (/metrics scrapes for size and render time), UPSTREAMS=1000, UP_INTERVAL=5s.
PARTS=pg,upstreams (a comma list, to run one part alone).

1. postgres: a cluster with max_connections = CONNECTIONS + 100. Phases "0" and
   "CONNECTIONS": the second holds CONNECTIONS idle client connections opened by
   `pgbench -n -c CONNECTIONS -j 2 -f sleep.sql` (a script of one `\\sleep`, so the connections
   sit idle in pg_stat_activity) as the role gateway. In each phase, one after the other:
   - vigil with only [postgres] at interval 1s (system off), its /metrics scraped every 1 s:
     CPU per run over WINDOW s (schedstat, /proc ticks as a cross-check) / runs from
     vigil_check_runs_total, and the run's wall time from vigil_check_duration_seconds;
   - postgres_exporter (Debian's defaults), scraped every 1 s: CPU per scrape;
   - then SCRAPES back-to-back scrapes of each one's /metrics: median wall time, bytes;
   - the server time of vigil's statistics statement (issue 21: why the database is slow or
     full, one statement per run) from pg_stat_statements (loaded in this cluster): calls, mean
     and max execution time, over vigil's phase.
   A third phase, "BLOCKED blocked", keeps the CONNECTIONS sessions and adds BLOCKED sessions
   (pgbench -c BLOCKED, an UPDATE of one row) waiting on a row lock a session holds in an open
   transaction: the statement then follows pg_blocking_pids() and reads pg_locks.waitstart.
2. upstreams: vigil with UPSTREAMS [[upstream]] at UP_INTERVAL against hello_hyper
   (target/release/examples/hello_hyper), after every upstream has run: CPU per run over
   WINDOW s, RSS, and SCRAPES scrapes of /metrics (median wall time, bytes, series).
   bench/upstreams.sh measures the same 1,000 upstreams at 1 s against blackbox_exporter
   (CPU per 1,000 probes, RSS, scheduling lag); this script adds the /metrics side.

Raw outputs in target/bench/scale-<timestamp>/.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing stack
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402
from stack import CpuWindow, ProcStats, ScrapeLoop, env_num, hammer, median, metric_sum  # noqa: E402


WINDOW = env_num("WINDOW", 12, float)
SUBWINDOWS = env_num("SUBWINDOWS", 3)
CONNECTIONS = env_num("CONNECTIONS", 500)
BLOCKED = env_num("BLOCKED", 100)
SCRAPES = env_num("SCRAPES", 20)
UPSTREAMS = env_num("UPSTREAMS", 1000)
UP_INTERVAL = os.environ.get("UP_INTERVAL", "5s")
PARTS = os.environ.get("PARTS", "pg,upstreams").split(",")


def per_unit_windows(pid, count, seconds=None, n=None):
    """``n`` consecutive windows of ``seconds`` each (defaults: SUBWINDOWS of WINDOW/SUBWINDOWS):
    for each, (CPU µs per unit of ``count()``, ticks µs per unit, units). ``count`` is read
    between windows, outside them."""
    n = n or SUBWINDOWS
    seconds = seconds or WINDOW / n
    out = []
    c0 = count()
    for _ in range(n):
        w = CpuWindow(pid)
        time.sleep(seconds)
        w.stop()
        c1 = count()
        units = c1 - c0
        out.append((w.cpu_s / units * 1e6 if units else float("nan"),
                    w.ticks_s / units * 1e6 if units else float("nan"), units, w.cpu_s / w.wall_s))
        c0 = count()
    return out


def statement_time(pg):
    """vigil's statistics statement as pg_stat_statements saw it since the last reset: calls,
    mean and max execution ms (both forms of the statement, with and without pg_locks.waitstart,
    summed)."""
    row = pg.psql("SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0), "
                  "coalesce(max(max_exec_time), 0) FROM pg_stat_statements "
                  "WHERE query LIKE 'WITH a AS (%' AND query LIKE '%pg_blocking_pids%'")
    calls, mean, most = row.split("|")
    return {"calls": int(calls), "mean_ms": float(mean), "max_ms": float(most)}


def pg_phase_vigil(pg, out, label):
    conf = (f'[defaults]\ninterval = "1s"\ntimeout = "1s"\n[shutdown]\ndrain = "0s"\n'
            f'[system]\nenabled = false\n[postgres]\nurl = "{pg.url}"\n')
    v = stack.Vigil(out, conf, name=f"vigil-pg-{label}")
    try:
        v.start()
        v.wait_ready(20)
        loop = ScrapeLoop([f"http://127.0.0.1:{v.port}/metrics"], 1.0)
        time.sleep(2)
        pg.psql("SELECT pg_stat_statements_reset()")
        t0 = v.metrics()
        wins = per_unit_windows(v.pid, lambda: metric_sum(v.metrics(), "vigil_check_runs_total"))
        t1 = v.metrics()
        loop.stop()
        runs = metric_sum(t1, "vigil_check_runs_total") - metric_sum(t0, "vigil_check_runs_total")
        dur = metric_sum(t1, "vigil_check_duration_seconds_sum") - metric_sum(t0, "vigil_check_duration_seconds_sum")
        times, body = hammer(f"http://127.0.0.1:{v.port}/metrics", SCRAPES)
        text = body.decode()
        seen = metric_sum(text, "vigil_postgres_connections")
        statement = statement_time(pg)
        return {
            "statement": statement, "blocked_seen": metric_sum(text, "vigil_postgres_blocked_queries"),
            "cpu_us_per_run": median([x[0] for x in wins]), "windows": wins,
            "ticks_us_per_run": median([x[1] for x in wins]),
            "wall_ms_per_run": dur / runs * 1e3 if runs else float("nan"),
            "runs": runs, "scrapes_in_window": loop.total(),
            "metrics_bytes": len(body), "render_ms": median(times) * 1e3,
            "connections_seen": seen, "rss_kib": ProcStats.rss_kib(v.pid), "load": stack.loadavg(),
        }
    finally:
        v.stop()


def pg_phase_exporter(pg, out, label):
    e = stack.postgres_exporter(out, pg.url)
    e.log_path = os.path.join(out, f"postgres_exporter-{label}.log")
    try:
        e.start("/metrics", lambda b: b"\npg_up 1" in b)
        loop = ScrapeLoop([e.url("/metrics")], 1.0)
        time.sleep(2)
        n0 = loop.total()
        wins = per_unit_windows(e.pid, loop.total)
        n = loop.total() - n0
        loop.stop()
        times, body = hammer(e.url("/metrics"), SCRAPES)
        return {
            "cpu_us_per_scrape": median([x[0] for x in wins]), "windows": wins,
            "scrapes": n, "metrics_bytes": len(body), "render_ms": median(times) * 1e3,
            "rss_kib": ProcStats.rss_kib(e.pid), "load": stack.loadavg(),
        }
    finally:
        e.stop()


def client_count(pg):
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))


def part_pg(out, res):
    pgbench = shutil.which("pgbench") or os.path.join(stack._pg_bin_dir(), "pgbench")  # noqa: SLF001
    script = os.path.join(out, "sleep.sql")
    with open(script, "w", encoding="ascii") as f:
        f.write("\\sleep 1 s\n")
    pg = stack.PgCluster(max_connections=CONNECTIONS + BLOCKED + 100,
                         settings={"shared_preload_libraries": "'pg_stat_statements'",
                                   "pg_stat_statements.track": "'all'"})
    bench = None
    blockers = []
    try:
        pg.start()
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        pg.psql("CREATE TABLE rows_locked (id int PRIMARY KEY, n int NOT NULL DEFAULT 0); "
                "INSERT INTO rows_locked VALUES (1); ALTER TABLE rows_locked OWNER TO gateway", db="gateway")
        print("postgres, 0 client connections ...", flush=True)
        res["pg"]["0"] = {"vigil": pg_phase_vigil(pg, out, "0"), "exporter": pg_phase_exporter(pg, out, "0"),
                          "clients": client_count(pg)}
        print(f"postgres, opening {CONNECTIONS} connections with pgbench ...", flush=True)
        log = open(os.path.join(out, "pgbench.log"), "wb")  # noqa: SIM115 - handed to the child
        try:
            bench = subprocess.Popen(
                [pgbench, "-n", "-c", str(CONNECTIONS), "-j", "2", "-T", "600", "-f", script,
                 "-h", "127.0.0.1", "-p", str(pg.port), "-U", "gateway", "gateway"],
                env=stack.clean_env({"PGPASSWORD": stack.GATEWAY_PASSWORD}), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, cwd=out)
        finally:
            log.close()
        stack.wait_until(lambda: bench.poll() is None and client_count(pg) >= CONNECTIONS, 90,
                         f"{CONNECTIONS} pgbench connections", interval_s=0.5)
        label = str(CONNECTIONS)
        print(f"postgres, {CONNECTIONS} client connections ...", flush=True)
        res["pg"][label] = {"vigil": pg_phase_vigil(pg, out, label),
                            "exporter": pg_phase_exporter(pg, out, label), "clients": client_count(pg)}
        if bench.poll() is not None:
            res["pg"][label]["warning"] = "pgbench exited during the phase"
        if BLOCKED:
            blockers = block_sessions(pg, out, pgbench)
            label = f"+{BLOCKED} blocked"
            print(f"postgres, {CONNECTIONS} client connections and {BLOCKED} blocked on a row lock ...", flush=True)
            res["pg"][label] = {"vigil": pg_phase_vigil(pg, out, label),
                                "exporter": pg_phase_exporter(pg, out, label), "clients": client_count(pg)}
    finally:
        for p in blockers:
            stack.stop_process(p, 10, sig=2)
        stack.stop_process(bench, 10, sig=2)  # SIGINT: pgbench reports and exits
        pg.close()


def waiting_on_locks(pg):
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))


def block_sessions(pg, out, pgbench):
    """One psql session holding row 1 of rows_locked in an open transaction, and BLOCKED pgbench
    clients updating that row: all wait on the lock. Returns the processes (stop them)."""
    psql = os.path.join(stack._pg_bin_dir(), "psql")  # noqa: SLF001
    holder = subprocess.Popen(
        [psql, "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "gateway", "-d", "gateway",
         "-c", "BEGIN", "-c", "UPDATE rows_locked SET n = n + 1 WHERE id = 1", "-c", "SELECT pg_sleep(600)"],
        env=stack.clean_env({"PGPASSWORD": stack.GATEWAY_PASSWORD, "PGAPPNAME": "batch-import"}),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out)
    script = os.path.join(out, "update.sql")
    with open(script, "w", encoding="ascii") as f:
        f.write("UPDATE rows_locked SET n = n + 1 WHERE id = 1;\n")
    stack.wait_until(lambda: pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                     "WHERE c.relname = 'rows_locked' AND l.mode = 'RowExclusiveLock' AND l.granted",
                                     db="gateway") != "0", 20, "the row lock holder")
    log = open(os.path.join(out, "pgbench-blocked.log"), "wb")  # noqa: SIM115 - handed to the child
    try:
        waiters = subprocess.Popen(
            [pgbench, "-n", "-c", str(BLOCKED), "-j", "2", "-T", "600", "-f", script,
             "-h", "127.0.0.1", "-p", str(pg.port), "-U", "gateway", "gateway"],
            env=stack.clean_env({"PGPASSWORD": stack.GATEWAY_PASSWORD}), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd=out)
    finally:
        log.close()
    stack.wait_until(lambda: waiting_on_locks(pg) >= BLOCKED, 90, f"{BLOCKED} sessions waiting on the row lock",
                     interval_s=0.5)
    return [waiters, holder]


def part_upstreams(out, res):
    if not os.access(stack.HELLO_BIN, os.X_OK):
        raise RuntimeError("build it: cargo build --release --locked --bin vigil --example hello_hyper")
    port = stack.free_port()
    hello = subprocess.Popen([stack.HELLO_BIN, f"127.0.0.1:{port}"], env=stack.clean_env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    v = None
    try:
        stack.wait_until(lambda: stack.http_get(port, "/", timeout=1)[0] == 200, 20, "hello_hyper")
        interval_s = stack.seconds(UP_INTERVAL)
        timeout = "2s" if interval_s >= 2 else UP_INTERVAL
        conf = f'[defaults]\ninterval = "{UP_INTERVAL}"\ntimeout = "{timeout}"\n[shutdown]\ndrain = "0s"\n' + "".join(
            f'[[upstream]]\nname = "u{i}"\nurl = "http://127.0.0.1:{port}/u{i}"\n' for i in range(UPSTREAMS))
        print(f"{UPSTREAMS} upstreams at {UP_INTERVAL} ...", flush=True)
        t_spawn = time.monotonic()
        v = stack.Vigil(out, conf, name="vigil-upstreams")
        v.start()
        v.wait_ready(interval_s * 3 + 30)
        ready_s = time.monotonic() - t_spawn
        time.sleep(1)
        rss_before = ProcStats.rss_kib(v.pid)
        # Counting runs reads /metrics (3 MB here) between the windows: outside them.
        wins = per_unit_windows(v.pid, lambda: metric_sum(v.metrics(), "vigil_check_runs_total"))
        times, body = hammer(f"http://127.0.0.1:{v.port}/metrics", SCRAPES)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        rss_scraped = ProcStats.rss_kib(v.pid)
        dstatus, dbody = v.get("/diag?format=json", timeout=30)
        res["upstreams"] = {
            "n": UPSTREAMS, "interval": UP_INTERVAL, "ready_s": ready_s,
            "runs": sum(x[2] for x in wins), "cpu_us_per_run": median([x[0] for x in wins]), "windows": wins,
            "cpu_pct": median([x[3] for x in wins]) * 100,
            "metrics_bytes": len(body), "series": series, "render_ms": median(times) * 1e3,
            "render_ms_max": max(times) * 1e3, "diag_json_bytes": len(dbody.encode()) if dstatus == 200 else None,
            "rss_before_kib": rss_before, "rss_kib": rss_scraped, "rss_after_diag_kib": ProcStats.rss_kib(v.pid),
            "hwm_kib": ProcStats.hwm_kib(v.pid), "load": stack.loadavg(),
        }
    finally:
        if v is not None:
            v.stop()
        stack.stop_process(hello, 5)


def fmt(x, digits=1):
    if x is None:
        return "-"
    return "nan" if x != x else f"{x:,.{digits}f}"  # noqa: PLR0124 - nan test


def report(res, out):
    lines = []
    add = lines.append
    if res["pg"]:
        add(f"postgres check at interval 1s vs postgres_exporter scraped every 1s; median of {SUBWINDOWS} windows of {WINDOW / SUBWINDOWS:g}s per phase")
        add(f"{'client connections':36} " + " ".join(f"{k:>12}" for k in res["pg"]))
        add(f"{'  (client backends counted)':36} " + " ".join(f"{fmt(p['clients'], 0):>12}" for p in res["pg"].values()))

        def row(label, who, key, digits=1):
            add(f"{label:36} " + " ".join(f"{fmt(p[who][key], digits):>12}" for p in res["pg"].values()))

        row("vigil CPU µs per run (+1 scrape)", "vigil", "cpu_us_per_run", 0)
        row("  (/proc ticks cross-check)", "vigil", "ticks_us_per_run", 0)
        row("vigil wall ms per run", "vigil", "wall_ms_per_run", 2)
        row("vigil /metrics bytes", "vigil", "metrics_bytes", 0)
        row("vigil /metrics render ms (median)", "vigil", "render_ms", 2)
        row("vigil connections seen (sum)", "vigil", "connections_seen", 0)
        row("vigil blocked queries seen", "vigil", "blocked_seen", 0)
        add(f"{'statement server ms, mean (calls)':36} " + " ".join(
            f"{fmt(p['vigil']['statement']['mean_ms'], 2) + ' (' + str(p['vigil']['statement']['calls']) + ')':>12}"
            for p in res["pg"].values()))
        add(f"{'statement server ms, max':36} " + " ".join(
            f"{fmt(p['vigil']['statement']['max_ms'], 2):>12}" for p in res["pg"].values()))
        row("postgres_exporter CPU µs per scrape", "exporter", "cpu_us_per_scrape", 0)
        row("postgres_exporter /metrics bytes", "exporter", "metrics_bytes", 0)
        row("postgres_exporter render ms (median)", "exporter", "render_ms", 2)
        ps = list(res["pg"].values())
        add(f"{'ratio vigil/exporter, CPU per probe':36} " + " ".join(
            f"{fmt(p['vigil']['cpu_us_per_run'] / p['exporter']['cpu_us_per_scrape'], 2):>12}" for p in ps))
        add(f"{'ratio vigil/exporter, render time':36} " + " ".join(
            f"{fmt(p['vigil']['render_ms'] / p['exporter']['render_ms'], 2):>12}" for p in ps))
        if len(ps) >= 2:
            growth = ps[1]["vigil"]["cpu_us_per_run"] / ps[0]["vigil"]["cpu_us_per_run"]
            egrowth = ps[1]["exporter"]["cpu_us_per_scrape"] / ps[0]["exporter"]["cpu_us_per_scrape"]
            add(f"growth 0 -> {CONNECTIONS} connections: vigil CPU per run x{growth:.2f}, "
                f"postgres_exporter CPU per scrape x{egrowth:.2f}; vigil /metrics "
                f"{ps[0]['vigil']['metrics_bytes']} -> {ps[1]['vigil']['metrics_bytes']} bytes")
        add(f"load: {[p['vigil']['load'] for p in ps]} (vigil phases), {[p['exporter']['load'] for p in ps]} (exporter)")
        add("")
    u = res.get("upstreams")
    if u:
        add(f"{u['n']} upstreams at {u['interval']} against hello_hyper")
        add(f"  start -> /readyz 200: {u['ready_s']:.1f} s; CPU per run {fmt(u['cpu_us_per_run'], 0)} µs "
            f"(median of {SUBWINDOWS} windows; {u['runs']:.0f} runs in {WINDOW:g}s, {u['cpu_pct']:.1f} % of one core)")
        add(f"  /metrics: {u['metrics_bytes']:,} bytes, {u['series']:,} series, render {fmt(u['render_ms'], 1)} ms "
            f"median ({fmt(u['render_ms_max'], 1)} max) over {SCRAPES} scrapes")
        add(f"  RSS: {u['rss_before_kib'] / 1024:.1f} MiB before any /metrics scrape"
            f", {u['rss_kib'] / 1024:.1f} MiB after the {SCRAPES} scrapes")
        add(f"  /diag?format=json: {fmt(u['diag_json_bytes'], 0)} bytes; RSS after it {u['rss_after_diag_kib'] / 1024:.1f} MiB "
            f"(peak {u['hwm_kib'] / 1024:.1f} MiB); load {u['load']}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main():
    stack.install_signal_handlers()
    stack.check_build((stack.VIGIL_BIN, stack.HELLO_BIN) if "upstreams" in PARTS else (stack.VIGIL_BIN,))
    out = stack.out_dir("scale")
    t0 = time.monotonic()
    res = {"pg": {}, "params": {"window": WINDOW, "subwindows": SUBWINDOWS, "connections": CONNECTIONS,
                                "blocked": BLOCKED, "scrapes": SCRAPES,
                                "upstreams": UPSTREAMS, "up_interval": UP_INTERVAL}}
    try:
        if "pg" in PARTS:
            part_pg(out, res)
        if "upstreams" in PARTS:
            part_upstreams(out, res)
    finally:
        with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    print()
    report(res, out)
    print(f"\ntotal {time.monotonic() - t0:.0f}s; raw output in {out}")


if __name__ == "__main__":
    main()
