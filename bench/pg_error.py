#!/usr/bin/env python3
"""What a huge PostgreSQL error message costs vigil (issue 23): peak RSS and the reason shown.

    cargo build --release --locked --bin vigil
    python3 bench/pg_error.py         # SIZES_MB="0 1 10 100" RUNS=3; about 1.5 minutes

For each size, a fresh vigil (only ``[postgres]``, interval and timeout ``TIMING``) watches an
ephemeral cluster whose role ``gateway`` has ``evil.current_setting(text)`` first on its
search_path: a plpgsql function that ``RAISE EXCEPTION``s a message of that many MB, so that
vigil's statistics statement (kept and pooled connection, every run) gets it. Measured after
``RUNS`` runs with the error: VmHWM and VmRSS of the process (``/proc/<pid>/status``), VmHWM
before the error, the length of ``/readyz/postgres`` and of ``/diag?format=json``. Size 0 is the
baseline (no error). Loopback only; every process stopped on exit.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

SIZES_MB = [int(s) for s in os.environ.get("SIZES_MB", "0 1 10 100").split()]
RUNS = stack.env_num("RUNS", 3, int)
TIMING = os.environ.get("TIMING", "10s")


def runs(vigil):
    return stack.metric_sum(vigil.metrics(), "vigil_check_runs_total", 'check="postgres"')


def measure(out, megabytes):
    with stack.PgCluster() as pg:
        config = (f'[system]\nenabled = false\n[postgres]\nurl = "{pg.url}"\n'
                  f'interval = "{TIMING}"\ntimeout = "{TIMING}"\n')
        vigil = stack.Vigil(out, config, name=f"vigil-{megabytes}mb").start()
        try:
            stack.wait_until(lambda: runs(vigil) >= 1, 60, "the first run")
            before = stack.ProcStats.hwm_kib(vigil.pid) / 1024
            if megabytes:
                pg.psql(
                    "CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO gateway; "
                    "CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$ "
                    f"BEGIN RAISE EXCEPTION '%', 'huge' || chr(10) || repeat('x', {megabytes * 1024 * 1024}); END $f$; "
                    "ALTER ROLE gateway SET search_path = evil, pg_catalog; "
                    "ALTER ROLE gateway SET log_min_messages = panic; "
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'gateway';",
                    db="gateway",
                )
                # Versions before issue 23 do not quote the error: their warn says only this.
                stack.wait_until(lambda: "cannot be read" in vigil.get("/readyz/postgres")[1], 120,
                                 "the statistics statement failing")
            start = runs(vigil)
            stack.wait_until(lambda: runs(vigil) >= start + RUNS, 60 + RUNS * 30, f"{RUNS} more runs")
            return {
                "size": f"{megabytes} MB" if megabytes else "none",
                "hwm_before": before,
                "hwm": stack.ProcStats.hwm_kib(vigil.pid) / 1024,
                "rss": stack.ProcStats.rss_kib(vigil.pid) / 1024,
                "readyz_bytes": len(vigil.get("/readyz/postgres")[1]),
                "diag_bytes": len(vigil.get("/diag?format=json")[1]),
                "line": vigil.get("/readyz/postgres")[1].strip()[:100],
            }
        finally:
            vigil.stop()


def main():
    stack.check_build()
    stack.install_signal_handlers()
    out = stack.out_dir("pg_error")
    print(f"PostgreSQL error messages of {SIZES_MB} MB, {RUNS} runs each at {TIMING}; load {stack.loadavg()}")
    rows = [measure(out, size) for size in SIZES_MB]
    print(f"{'error message':14} {'VmHWM before':>12} {'VmHWM':>8} {'VmRSS':>8} {'/readyz/postgres':>16} {'/diag JSON':>11}")
    for r in rows:
        print(f"{r['size']:14} {r['hwm_before']:10.1f}Mi {r['hwm']:6.1f}Mi {r['rss']:6.1f}Mi "
              f"{r['readyz_bytes']:14d} B {r['diag_bytes']:9d} B")
        print(f"    {r['line']}")
    print(f"load average after: {stack.loadavg()}; raw output in {out}")


if __name__ == "__main__":
    main()
