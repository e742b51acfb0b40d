#!/usr/bin/env python3
"""Soak: every check running at a short interval for SOAK_SECONDS (default 600) with faults
injected on a schedule, while /metrics, /readyz and /diag are scraped; vigil's RSS, open file
descriptors, threads and tokio tasks are sampled and must stay flat. Off by default in
bench/run-all.sh (SOAK=1 turns it on).

The stack is bench/stack.py's (postgres, fake gateway with a JWT validate endpoint, kubelet-style
secret mount, UPSTREAMS upstreams) and vigil runs full_config at INTERVAL (default 1s).

Schedule: the run is cut into slots of SLOT_SECONDS (10); each slot injects one fault, in turn:
  postgres  kill -9 of the postmaster at +0 s, pg_ctl start at +2 s;
  upstream  upstream u<k> (k cycling) hangs at +0 s, answers 500 at +3 s, 200 again at +6 s;
  jwt       the mounted secret is rotated at +0 s (the gateway still runs the old one), the
            gateway restarts with the new secret at +3 s.
Each slot takes two samples: "fault" at +2.5 s (something is down) and "steady" near the end of
the slot, once /readyz answers 200 again (waited for at most 5 s; a slot that does not recover
is counted and its sample marked "unrecovered"). Drift is judged on the steady samples only, so
that a sample taken while postgres is down (one connection fewer) does not look like a change.

A scraper thread meanwhile GETs, every SCRAPE_SECONDS (0.5), in turn: /metrics, /readyz,
/diag, /diag?format=json; /metrics must answer 200 (readyz and diag 200 or 503).

Samples (CSV in target/bench/soak-<timestamp>/samples.csv): time, phase, VmRSS, VmHWM, RssAnon,
fd count and thread count (read while the scraper is held, 100 ms after its last request: the
minimum fd count, the maximum thread count and the minimum task count of five reads 40 ms
apart, so that a probe's connection open at that instant does not look like a leak), tokio alive tasks (``vigil.runtime.alive_tasks`` of /diag?format=json when
vigil exports it, else n/a), /metrics size, CPU seconds, /readyz status, load average.

Verdict "flat", comparing the median of the first window with the median of the last window
(windows of 60 s, or a third of the run when it is shorter than 3 minutes):
  RSS      last - first <= max(10 % of first, 2 MiB);
  fds      last == first (a leaked socket or file shows at once);
  tasks    last == first (a leaked task: a kept connection's driver, a hung probe);
  threads  last <= max of the first window (tokio's blocking pool starts and retires threads
           for file reads with a 10 s keep-alive, so the count moves by one or two).

Environment: SOAK_SECONDS (600), INTERVAL (1s), SLOT_SECONDS (10), SCRAPE_SECONDS (0.5),
UPSTREAMS (5), VIGIL_BIN (target/release/vigil; another build to soak). Bounded everywhere; the stack is stopped on exit, also on Ctrl-C or SIGTERM.
"""

import csv
import json
import os
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the worktree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402 - after the path insert
from faults import http_status  # noqa: E402

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
INTERVAL = os.environ.get("INTERVAL", "1s")
SLOT_SECONDS = float(os.environ.get("SLOT_SECONDS", "10"))
SCRAPE_SECONDS = float(os.environ.get("SCRAPE_SECONDS", "0.5"))
UPSTREAMS = int(os.environ.get("UPSTREAMS", "5"))
VIGIL_BIN = os.environ.get("VIGIL_BIN", stack.VIGIL_BIN)
RSS_TOLERANCE_RATIO = 0.10
RSS_TOLERANCE_KIB = 2048
FAULTS = ("postgres", "upstream", "jwt")


class Scraper:
    """GETs the endpoints in turn every SCRAPE_SECONDS in a thread; counts answers by path."""

    PATHS = ("/metrics", "/readyz", "/diag", "/diag?format=json")

    def __init__(self, port):
        self.port = port
        self.counts = {p: {"ok": 0, "bad": 0, "none": 0} for p in self.PATHS}
        self.bad_examples = []
        self.quiet = threading.Lock()  # held by the sampler while it reads /proc
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            path = self.PATHS[i % len(self.PATHS)]
            i += 1
            with self.quiet:
                status = http_status(self.port, path, timeout_s=5)
            # /diag answers 503 while vigil is not ready, as /readyz does (the health+json draft).
            allowed = (200,) if path == "/metrics" else (200, 503)
            kind = "none" if status == 0 else ("ok" if status in allowed else "bad")
            self.counts[path][kind] += 1
            if kind != "ok" and len(self.bad_examples) < 10:
                self.bad_examples.append(f"{path} -> {status or 'no answer'}")
            self._stop.wait(SCRAPE_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def alive_tasks(v):
    """``vigil.runtime.alive_tasks`` from /diag?format=json, else None (an older vigil)."""
    try:
        d = json.loads(v.get("/diag?format=json", timeout=5)[1])
    except (OSError, ValueError):
        return None
    tasks = ((d.get("vigil") or {}).get("runtime") or {}).get("alive_tasks")
    return tasks if isinstance(tasks, int) else None


def resting(v, scraper):
    """(RSS, HWM, anon, fds, threads, tasks) read while no scrape is in flight: the scraper is
    held, 100 ms pass for closed connections to be reaped, then five reads 40 ms apart; fds and
    tasks are their minimum (a probe's connection and its task alive at that instant are not a
    leak), threads their maximum, memory the last read. The task count includes the connection
    task of the /diag request that reads it, the same in every sample."""
    pid = v.pid
    with scraper.quiet:
        time.sleep(0.1)
        fds, threads, tasks = [], [], []
        for _ in range(5):
            fds.append(stack.ProcStats.fd_count(pid))
            threads.append(stack.ProcStats.thread_count(pid))
            tasks.append(alive_tasks(v))
            time.sleep(0.04)
        known = [t for t in tasks if t is not None]
        return (stack.ProcStats.rss_kib(pid), stack.ProcStats.hwm_kib(pid), stack.ProcStats.anon_kib(pid),
                min(fds), max(threads), min(known) if known else None)


def sample(v, t0, phase, readyz, scraper):
    pid = v.pid
    t_s = round(time.monotonic() - t0, 1)
    rss, hwm, anon, fds, threads, tasks = resting(v, scraper)
    try:
        metrics_bytes = len(v.get("/metrics", timeout=5)[1].encode())
    except OSError:
        metrics_bytes = None
    return {
        "t_s": t_s,
        "phase": phase,
        "rss_kib": rss,
        "hwm_kib": hwm,
        "anon_kib": anon,
        "fds": fds,
        "threads": threads,
        "tasks": tasks,
        "metrics_bytes": metrics_bytes,
        "cpu_s": round(stack.ProcStats.cpu_seconds(pid), 2),
        "readyz": readyz,
        "load1": stack.loadavg().split()[0],
    }


def sleep_until(t):
    time.sleep(max(0.0, t - time.monotonic()))


def inject(s, kind, slot_index, slot_start, upstream_k):
    """Runs one slot's fault and repair on schedule (offsets from slot_start)."""
    if kind == "postgres":
        s.pg.kill9()
        sleep_until(slot_start + 2)
        s.pg.start()
    elif kind == "upstream":
        i = upstream_k % s.upstreams.n
        s.upstreams.set_mode(i, "hang")
        sleep_until(slot_start + 3)
        s.upstreams.set_mode(i, "500")
        sleep_until(slot_start + 6)
        s.upstreams.set_mode(i, "ok")
    elif kind == "jwt":
        s.secret.rotate()
        sleep_until(slot_start + 3)
        s.gateway.restart_with_current_secret()
    else:  # pragma: no cover - FAULTS is fixed
        raise ValueError(kind)


def window_stats(values):
    values = [x for x in values if x is not None]
    return statistics.median(values) if values else None


def main():
    if SLOT_SECONDS < 9:
        print("SLOT_SECONDS must be at least 9 (the upstream fault takes 6 s, then recovery)", file=sys.stderr)
        return 2
    stack.install_signal_handlers()
    out = stack.out_dir("soak")
    slots = max(3, int(SOAK_SECONDS // SLOT_SECONDS))
    print(f"soak: {slots} slots of {SLOT_SECONDS:g} s ({slots * SLOT_SECONDS:g} s), INTERVAL={INTERVAL}, "
          f"{UPSTREAMS} upstreams, scrapes every {SCRAPE_SECONDS:g} s; load {stack.loadavg()} on {os.cpu_count()} cores")
    print(f"raw output in {os.path.relpath(out)}; binary {os.path.relpath(VIGIL_BIN)}")
    samples = []
    unrecovered = 0
    faults_done = {k: 0 for k in FAULTS}
    with stack.Stack(out, n_upstreams=UPSTREAMS) as s:
        v = stack.Vigil(s.out_dir, s.full_config(INTERVAL), binary=VIGIL_BIN)
        s.vigils.append(v)  # the stack stops it on exit
        v.start()
        v.wait_ready(60)
        pid = v.pid
        cpu0 = stack.ProcStats.cpu_seconds(pid)
        print(f"{'t s':>6} {'phase':11} {'RSS KiB':>8} {'anon KiB':>8} {'fds':>4} {'thr':>4} {'tasks':>5} "
              f"{'/metrics B':>10} {'readyz':>6} {'load1':>5}")
        t0 = time.monotonic()
        with Scraper(v.port) as scraper:
            for n in range(slots):
                slot_start = t0 + n * SLOT_SECONDS
                sleep_until(slot_start)
                kind = FAULTS[n % len(FAULTS)]
                # The fault runs in its own thread so that the "fault" sample keeps its time.
                injector = threading.Thread(target=inject, args=(s, kind, n, slot_start, n // len(FAULTS)),
                                            daemon=True)
                injector.start()
                sleep_until(slot_start + 2.5)
                rows = [sample(v, t0, f"fault:{kind[:4]}", http_status(v.port, "/readyz"), scraper)]
                injector.join(timeout=SLOT_SECONDS + 30)
                if injector.is_alive():
                    raise RuntimeError(f"the {kind} fault of slot {n} did not finish")
                faults_done[kind] += 1
                # Steady: /readyz back to 200 (bounded), sampled near the end of the slot.
                steady_at = slot_start + SLOT_SECONDS - 0.5
                try:
                    stack.wait_until(lambda: http_status(v.port, "/readyz") == 200,
                                     max(5.0, steady_at - time.monotonic()), "recovery")
                    phase = "steady"
                except TimeoutError:
                    unrecovered += 1
                    phase = "unrecovered"
                sleep_until(steady_at)
                rows.append(sample(v, t0, phase, http_status(v.port, "/readyz"), scraper))
                for r in rows:
                    samples.append(r)
                    print(f"{r['t_s']:6.1f} {r['phase']:11} {r['rss_kib']:8d} {r['anon_kib']:8d} {r['fds']:4d} "
                          f"{r['threads']:4d} {'n/a' if r['tasks'] is None else r['tasks']:>5} "
                          f"{r['metrics_bytes'] or 0:10d} {r['readyz']:6d} {r['load1']:>5}", flush=True)
                if v.proc.poll() is not None:
                    raise RuntimeError(f"vigil exited during the soak:\n{v.logs()[-3000:]}")
        elapsed = time.monotonic() - t0
        cpu = stack.ProcStats.cpu_seconds(pid) - cpu0
        transitions = sum(1 for line in v.logs().splitlines() if '"Check status changed"' in line)

    with open(os.path.join(out, "samples.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    return report(samples, scraper, faults_done, unrecovered, elapsed, cpu, transitions, out)


def report(samples, scraper, faults_done, unrecovered, elapsed, cpu, transitions, out):
    steady = [r for r in samples if r["phase"] == "steady"]
    window = 60.0 if elapsed >= 180 else elapsed / 3
    first = [r for r in steady if r["t_s"] <= window]
    last = [r for r in steady if r["t_s"] >= elapsed - window]
    print(f"\n{len(samples)} samples over {elapsed:.0f} s; faults injected: "
          + ", ".join(f"{k} {n}" for k, n in faults_done.items())
          + f"; slots not recovered by their steady sample: {unrecovered}; status changes logged: {transitions}")
    print(f"vigil CPU over the soak: {cpu:.1f} s = {100 * cpu / elapsed:.2f} % of one core "
          f"(checks at {INTERVAL} + faults + {1 / SCRAPE_SECONDS:g} scrapes/s); load now {stack.loadavg()}")
    print("scrapes (ok / bad status / no answer): " + "; ".join(
        f"{p} {c['ok']}/{c['bad']}/{c['none']}" for p, c in scraper.counts.items()))
    if scraper.bad_examples:
        print("  e.g. " + ", ".join(scraper.bad_examples))
    print(f"\ndrift, steady samples: median of the first {window:.0f} s ({len(first)} samples) vs the last "
          f"{window:.0f} s ({len(last)}), max over all samples")
    print(f"{'':8} {'first':>9} {'last':>9} {'max':>9}  verdict")
    all_flat = True

    def line(name, key, judge, unit=""):
        nonlocal all_flat
        a = window_stats([r[key] for r in first])
        b = window_stats([r[key] for r in last])
        mx = [r[key] for r in samples if r[key] is not None]
        if a is None or b is None:
            print(f"{name:8} {'n/a':>9} {'n/a':>9} {'n/a':>9}  n/a (not exported by this vigil)")
            return
        ok, why = judge(a, b, [r[key] for r in first])
        all_flat &= ok
        print(f"{name:8} {a:9g} {b:9g} {max(mx):9g}{unit}  {'flat' if ok else 'NOT FLAT'} ({why})")

    def rss_judge(a, b, _):
        tol = max(RSS_TOLERANCE_RATIO * a, RSS_TOLERANCE_KIB)
        return b - a <= tol, f"{b - a:+.0f} KiB, tolerance {tol:.0f} KiB"

    def equal_judge(a, b, _):
        return b == a, f"{b - a:+g}"

    def thread_judge(_a, b, first_values):
        return b <= max(first_values), f"last median {b:g}, first-window max {max(first_values):g}"

    line("RSS KiB", "rss_kib", rss_judge)
    line("anon KiB", "anon_kib", lambda a, b, f: (True, f"{b - a:+.0f} KiB, information"))
    line("fds", "fds", equal_judge)
    line("tasks", "tasks", equal_judge)
    line("threads", "threads", thread_judge)
    half = [r for r in steady if r["t_s"] >= elapsed / 2]
    if len(half) >= 3:
        slope = statistics.linear_regression([r["t_s"] for r in half], [r["rss_kib"] for r in half]).slope
        print(f"RSS trend over the second half (least squares on {len(half)} steady samples): "
              f"{slope * 60:+.0f} KiB/min (information: latency windows fill for `window`, 5m by default)")
    bad_scrapes = sum(c["bad"] + c["none"] for c in scraper.counts.values())
    verdict = all_flat and bad_scrapes == 0 and unrecovered == 0
    print(f"\nverdict: {'FLAT' if verdict else 'NOT FLAT or not clean'}"
          + ("" if bad_scrapes == 0 else f"; {bad_scrapes} failed scrapes")
          + ("" if unrecovered == 0 else f"; {unrecovered} slots did not recover"))
    print(f"samples: {os.path.relpath(os.path.join(out, 'samples.csv'))}")
    return 0 if verdict else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
