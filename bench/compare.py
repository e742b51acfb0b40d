#!/usr/bin/env python3
"""vigil side by side with what users run today: Prometheus blackbox_exporter (probing the
gateway's health URL and the upstreams) plus postgres_exporter (on the same cluster), in one
run, one after the other (never at the same time: 2 cores), several rounds, medians, ratios
vigil / exporters.

  python3 bench/compare.py          # about 3 minutes at the defaults, once built

Environment (defaults): INTERVAL=5s (check and scrape interval), WINDOW=15 (seconds measured
per round), ROUNDS=3, STARTS=5 (startup measurements per tool), SCRAPES=200 (tight-loop
/metrics and /probe requests), PG_SCRAPES=20 (tight-loop postgres_exporter scrapes),
PROBE_WINDOW=2 (seconds per window of the per-check cost, 3 windows per check kind),
PROBE_INTERVAL_MS=200 (interval and timeout of the checks in that part), EQUAL=0 (1: each
round also measures vigil configured with only the exporters' probes, like for like).

Parts, all against the same stack (bench/stack.py: PostgreSQL, fake gateway with a JWT secret
mount, 5 upstreams, on 127.0.0.1):

1. Idle cost. Each round: vigil with the full configuration (postgres, jwt with validate_url,
   gateway health + metrics, 5 upstreams, system) at INTERVAL, its /metrics scraped at INTERVAL
   (Prometheus scrapes it too); then blackbox_exporter + postgres_exporter, driven by a
   Prometheus-like loop at INTERVAL: 6 /probe (gateway health, 5 upstreams) + 1 postgres_exporter
   /metrics. After one interval of warm-up, CPU over WINDOW s (schedstat per thread; /proc/PID/stat
   ticks as a cross-check) and RSS sampled every second (median of the samples; the exporters'
   two RSS summed). The scrape loop's own CPU is not counted (it stands for Prometheus).
2. Cost per scrape, in the same rounds after the window: SCRAPES x vigil /metrics, SCRAPES x
   blackbox /probe of an upstream, PG_SCRAPES x postgres_exporter /metrics, back to back over
   one kept-alive connection: CPU delta / count, and the median wall time per request.
3. Cost per check run: vigil with one kind of check only (system off) at PROBE_INTERVAL_MS,
   three windows of PROBE_WINDOW s each: CPU / vigil_check_runs_total delta; median of the three.
4. Startup: STARTS times, exec to the first /readyz?verbose answering 200 with every configured
   check listed [+] (so every check has a result); blackbox_exporter: exec to the first /probe
   with probe_success 1; postgres_exporter: exec to the first /metrics with pg_up 1.

Raw outputs (configs, logs, results.json, summary.txt) in target/bench/compare-<timestamp>/.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing stack
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402
from stack import CpuWindow, ProcStats, RssSampler, ScrapeLoop, env_num, hammer, median, metric_sum  # noqa: E402


INTERVAL = os.environ.get("INTERVAL", "5s")
INTERVAL_S = stack.seconds(INTERVAL)
WINDOW = env_num("WINDOW", 15, float)
ROUNDS = env_num("ROUNDS", 3)
STARTS = env_num("STARTS", 5)
SCRAPES = env_num("SCRAPES", 200)
PG_SCRAPES = env_num("PG_SCRAPES", 20)
PROBE_WINDOW = env_num("PROBE_WINDOW", 2, float)
PROBE_INTERVAL_MS = env_num("PROBE_INTERVAL_MS", 200)
EQUAL = os.environ.get("EQUAL", "0") not in ("", "0")
WARMUP = INTERVAL_S + 1


def vigil_runs(v, check_filter=""):
    return metric_sum(v.metrics(), "vigil_check_runs_total", check_filter)


def equal_config(s):
    """vigil doing only what the exporters do: postgres and 6 HTTP probes (the gateway's health
    URL as an upstream, the 5 upstreams); no jwt, no gateway metrics, no system check."""
    timeout = "2s" if INTERVAL_S >= 2 else INTERVAL
    targets = [("gateway-health", s.gateway.health_url)] + [(f"u{i}", s.upstreams.url(i)) for i in range(s.upstreams.n)]
    return (f'[defaults]\ninterval = "{INTERVAL}"\ntimeout = "{timeout}"\n[shutdown]\ndrain = "0s"\n'
            f'[system]\nenabled = false\n[postgres]\nurl = "{s.pg.url}"\n'
            + "".join(f'[[upstream]]\nname = "{n}"\nurl = "{u}"\n' for n, u in targets))


def idle_vigil(s, rnd, res, key="vigil", config=None):
    v = s.start_vigil(config=config, interval=INTERVAL, name=f"{key}-idle-{rnd}")
    try:
        v.wait_ready(30)
        loop = ScrapeLoop([f"http://127.0.0.1:{v.port}/metrics"], INTERVAL_S)
        time.sleep(WARMUP)
        runs0 = vigil_runs(v)
        rss = RssSampler([v.pid])
        w = CpuWindow(v.pid)
        time.sleep(WINDOW)
        w.stop()
        rss.stop()
        runs1 = vigil_runs(v)
        loop.stop()
        threads, fds = ProcStats.thread_count(v.pid), ProcStats.fd_count(v.pid)
        hwm = ProcStats.hwm_kib(v.pid)
        # Cost per /metrics scrape, on the same process.
        m0 = CpuWindow(v.pid)
        times, body = hammer(f"http://127.0.0.1:{v.port}/metrics", SCRAPES)
        m0.stop()
        res[key].append({
            "cpu_s": w.cpu_s, "ticks_s": w.ticks_s, "sched_s": w.sched_s, "wall_s": w.wall_s,
            "runs": runs1 - runs0, "scrapes": loop.total(), "rss_kib": rss.median_kib, "rss_max_kib": rss.max_kib,
            "hwm_kib": hwm, "threads": threads, "fds": fds,
            "scrape_cpu_us": m0.cpu_s / SCRAPES * 1e6, "scrape_ms": median(times) * 1e3, "metrics_bytes": len(body),
            "load": stack.loadavg(),
        })
    finally:
        v.stop()
        s.vigils.remove(v)


def start_exporters(s, out):
    bb = stack.blackbox_exporter(out)
    pe = stack.postgres_exporter(out, s.pg.url)
    probe0 = f"/probe?module=http_2xx&target={s.upstreams.url(0)}"
    bb.start(probe0, lambda b: b"\nprobe_success 1" in b)
    try:
        pe.start("/metrics", lambda b: b"\npg_up 1" in b)
    except BaseException:
        bb.stop()
        raise
    return bb, pe


def idle_exporters(s, out, rnd, res):
    bb, pe = start_exporters(s, out)
    try:
        targets = [s.gateway.health_url] + [s.upstreams.url(i) for i in range(s.upstreams.n)]
        urls = [bb.url(f"/probe?module=http_2xx&target={t}") for t in targets] + [pe.url("/metrics")]
        loop = ScrapeLoop(urls, INTERVAL_S)
        time.sleep(WARMUP)
        loop_ok0 = loop.total()
        rss = RssSampler([bb.pid, pe.pid])
        wb, wp = CpuWindow(bb.pid), CpuWindow(pe.pid)
        time.sleep(WINDOW)
        wb.stop()
        wp.stop()
        rss.stop()
        scrapes = loop.total() - loop_ok0
        loop.stop()
        success = all(b"\nprobe_success 1" in loop.last.get(u, b"") for u in urls[:-1]) and \
            b"\npg_up 1" in loop.last.get(urls[-1], b"")
        bb_rss, pe_rss = ProcStats.rss_kib(bb.pid), ProcStats.rss_kib(pe.pid)
        hwm = ProcStats.hwm_kib(bb.pid) + ProcStats.hwm_kib(pe.pid)
        threads = ProcStats.thread_count(bb.pid) + ProcStats.thread_count(pe.pid)
        fds = ProcStats.fd_count(bb.pid) + ProcStats.fd_count(pe.pid)
        # Cost per probe and per postgres_exporter scrape.
        c = CpuWindow(bb.pid)
        ptimes, pbody = hammer(urls[1], SCRAPES)
        c.stop()
        d = CpuWindow(pe.pid)
        gtimes, gbody = hammer(urls[-1], PG_SCRAPES)
        d.stop()
        res["exporters"].append({
            "cpu_s": wb.cpu_s + wp.cpu_s, "bb_cpu_s": wb.cpu_s, "pe_cpu_s": wp.cpu_s,
            "ticks_s": wb.ticks_s + wp.ticks_s, "sched_s": wb.sched_s + wp.sched_s, "wall_s": wb.wall_s,
            "scrapes": scrapes, "all_success": success,
            "rss_kib": rss.median_kib, "rss_max_kib": rss.max_kib, "bb_rss_kib": bb_rss, "pe_rss_kib": pe_rss,
            "hwm_kib": hwm, "threads": threads, "fds": fds,
            "probe_cpu_us": c.cpu_s / SCRAPES * 1e6, "probe_ms": median(ptimes) * 1e3, "probe_bytes": len(pbody),
            "pg_scrape_cpu_us": d.cpu_s / PG_SCRAPES * 1e6, "pg_scrape_ms": median(gtimes) * 1e3,
            "pg_metrics_bytes": len(gbody), "load": stack.loadavg(),
        })
    finally:
        bb.stop()
        pe.stop()


def per_check_cost(s, res):
    """vigil with one kind of check at PROBE_INTERVAL_MS: CPU per run (median of 3 windows)."""
    base = (f'[defaults]\ninterval = "{PROBE_INTERVAL_MS}ms"\ntimeout = "{PROBE_INTERVAL_MS}ms"\n'
            '[shutdown]\ndrain = "0s"\n[system]\nenabled = false\n')
    kinds = {
        "postgres": f'[postgres]\nurl = "{s.pg.url}"\n',
        "jwt": (f'[jwt]\nsecret_file = "{s.secret.path}"\nissuer = "{stack.JWT_ISSUER}"\n'
                f'audience = "{stack.JWT_AUDIENCE}"\nvalidate_url = "{s.gateway.validate_url}"\n'),
        "gateway": f'[gateway]\nhealth_url = "{s.gateway.health_url}"\nmetrics_url = "{s.gateway.metrics_url}"\n',
        "upstream": "".join(f'[[upstream]]\nname = "u{i}"\nurl = "{s.upstreams.url(i)}"\n'
                            for i in range(s.upstreams.n)),
        "system": '[system]\nenabled = true\n',
    }
    for kind, section in kinds.items():
        conf = base + section if kind != "system" else base.replace("[system]\nenabled = false\n", "") + section
        v = s.start_vigil(config=conf, name=f"vigil-{kind}")
        try:
            v.wait_ready(20)
            time.sleep(1)
            per_run = []
            f0 = vigil_runs(v, 'result="fail"')
            for _ in range(3):
                r0 = vigil_runs(v)
                w = CpuWindow(v.pid)
                time.sleep(PROBE_WINDOW)
                w.stop()
                r1 = vigil_runs(v)
                if r1 > r0:
                    per_run.append(w.cpu_s / (r1 - r0) * 1e6)
            failed = vigil_runs(v, 'result="fail"') - f0
            text = v.metrics()
            dur_sum = metric_sum(text, "vigil_check_duration_seconds_sum")
            dur_n = metric_sum(text, "vigil_check_duration_seconds_count")
            res["per_check"][kind] = {
                "cpu_us_per_run": median(per_run), "rounds": per_run,
                "wall_ms_per_run": dur_sum / dur_n * 1e3 if dur_n else float("nan"),
                "failed_runs": failed,
            }
        finally:
            v.stop()
            s.vigils.remove(v)


def startup(s, out, res):
    names = stack.check_names(s.upstreams.n)
    conf = s.full_config(INTERVAL)
    for i in range(STARTS):
        v = stack.Vigil(out, conf, name=f"vigil-start-{i}")
        try:
            v.spawn()

            def complete(v=v):
                status, body = v.get("/readyz?verbose", timeout=1)
                return status == 200 and all(f"[+]{n} " in body or f"[+]{n}\n" in body for n in names)

            stack.wait_until(complete, 30, "vigil complete readiness", interval_s=0.005)
            res["startup"]["vigil"].append((time.monotonic() - v.spawned_at) * 1e3)
        finally:
            v.stop()
        bb, pe = start_exporters(s, out)
        try:
            res["startup"]["blackbox"].append(bb.ready_s * 1e3)
            res["startup"]["postgres_exporter"].append(pe.ready_s * 1e3)
        finally:
            bb.stop()
            pe.stop()


def fmt(x, digits=1):
    return "nan" if x != x else f"{x:,.{digits}f}"  # noqa: PLR0124 - nan test


def ratio(a, b):
    return a / b if b else float("nan")


def report(res, out):
    v, e = res["vigil"], res["exporters"]

    def m(rows, key):
        return median([r[key] for r in rows])

    lines = []
    add = lines.append
    add(f"vigil vs blackbox_exporter + postgres_exporter; interval {INTERVAL}, window {WINDOW:g}s, "
        f"{ROUNDS} rounds, medians; {os.cpu_count()} cores")
    add(f"load (1/5/15 min) at each round: vigil {[r['load'] for r in v]}, exporters {[r['load'] for r in e]}")
    add("")
    add(f"{'':44} {'vigil':>12} {'exporters':>12} {'ratio':>7}")

    def row(label, a, b, digits=1, show_ratio=True):
        add(f"{label:44} {fmt(a, digits):>12} {fmt(b, digits):>12} {fmt(ratio(a, b), 2) if show_ratio else '':>7}")

    row("idle RSS, median of 1 s samples (MiB)", m(v, "rss_kib") / 1024, m(e, "rss_kib") / 1024, 2)
    row("idle RSS, max sample (MiB)", m(v, "rss_max_kib") / 1024, m(e, "rss_max_kib") / 1024, 2)
    add(f"{'  exporters: blackbox + postgres_exporter':44} {'':>12} "
        f"{fmt(m(e, 'bb_rss_kib') / 1024, 2)} + {fmt(m(e, 'pe_rss_kib') / 1024, 2)} (at the end of the window)")
    row("peak RSS since start, VmHWM (MiB)", m(v, "hwm_kib") / 1024, m(e, "hwm_kib") / 1024, 2)
    cv = [r["cpu_s"] / r["wall_s"] * 100 for r in v]
    ce = [r["cpu_s"] / r["wall_s"] * 100 for r in e]
    row("idle CPU, % of one core", median(cv), median(ce), 3)
    row("idle CPU, ms per minute", median(cv) * 600, median(ce) * 600, 1)
    add(f"{'  exporters: blackbox + postgres_exporter':44} {'':>12} "
        f"{fmt(median([r['bb_cpu_s'] / r['wall_s'] * 60e3 for r in e]))} + "
        f"{fmt(median([r['pe_cpu_s'] / r['wall_s'] * 60e3 for r in e]))} ms/min")
    add(f"{'  (/proc/PID/stat ticks, cross-check, ms/min)':44} "
        f"{fmt(median([r['ticks_s'] / r['wall_s'] * 60e3 for r in v])):>12} "
        f"{fmt(median([r['ticks_s'] / r['wall_s'] * 60e3 for r in e])):>12}")
    row("threads", m(v, "threads"), m(e, "threads"), 0, False)
    row("open file descriptors", m(v, "fds"), m(e, "fds"), 0, False)
    add(f"{'work per window: check runs / scrapes+probes':44} {fmt(m(v, 'runs'), 0):>12} {fmt(m(e, 'scrapes'), 0):>12}")
    ve = res.get("vigil_equal") or []
    if ve:
        add("")
        add("EQUAL=1: vigil doing only the exporters' probes (postgres + 6 HTTP checks; no jwt, gateway metrics, system)")
        row("  idle RSS, median of 1 s samples (MiB)", m(ve, "rss_kib") / 1024, m(e, "rss_kib") / 1024, 2)
        cq = [r["cpu_s"] / r["wall_s"] * 100 for r in ve]
        row("  idle CPU, ms per minute", median(cq) * 600, median(ce) * 600, 1)
        add(f"  load at each round: {[r['load'] for r in ve]}")
    add("")
    add("cost per scrape (back-to-back over one connection; CPU µs per request, median wall ms)")
    row("/metrics: vigil vs postgres_exporter, µs", m(v, "scrape_cpu_us"), m(e, "pg_scrape_cpu_us"), 0)
    row("  wall ms per scrape", m(v, "scrape_ms"), m(e, "pg_scrape_ms"), 2)
    row("  bytes", m(v, "metrics_bytes"), m(e, "pg_metrics_bytes"), 0)
    add(f"{'blackbox /probe of one upstream, CPU µs':44} {'':>12} {fmt(m(e, 'probe_cpu_us'), 0):>12}")
    add(f"{'  wall ms / bytes':44} {'':>12} {fmt(m(e, 'probe_ms'), 2):>12} / {fmt(m(e, 'probe_bytes'), 0)}")
    add("")
    add(f"cost per check run (vigil with one kind of check at {PROBE_INTERVAL_MS} ms; median of 3 windows)")
    pc = res["per_check"]
    add(f"{'':44} {'vigil µs':>12} {'exporter µs':>12} {'ratio':>7}")
    pairs = [("upstream", "blackbox /probe", m(e, "probe_cpu_us")),
             ("postgres", "postgres_exporter scrape", m(e, "pg_scrape_cpu_us")),
             ("gateway", "(health: blackbox /probe)", m(e, "probe_cpu_us")),
             ("jwt", "(no exporter does this)", float("nan")),
             ("system", "(no exporter here)", float("nan"))]
    for kind, what, theirs in pairs:
        if kind in pc:
            a = pc[kind]["cpu_us_per_run"]
            failed = pc[kind].get("failed_runs", 0)
            add(f"{kind + ' run vs ' + what:44} {fmt(a, 0):>12} {fmt(theirs, 0):>12} {fmt(ratio(a, theirs), 2):>7}"
                f"   (wall {fmt(pc[kind]['wall_ms_per_run'], 2)} ms/run"
                + (f"; {failed:.0f} FAILED runs: timeouts under load?" if failed else "") + ")")
    if "postgres" in pc:
        # Issue 21: the statement grew (blocked queries, idle transactions, limits, recovery); the
        # run must stay cheap next to what users run today.
        r = ratio(pc["postgres"]["cpu_us_per_run"], m(e, "pg_scrape_cpu_us"))
        add(f"issue 21 target: postgres run / postgres_exporter scrape <= 0.15: {fmt(r, 3)} "
            f"({'met' if r <= 0.15 else 'NOT met'})")
    add("")
    st = res["startup"]
    add(f"startup, exec to first complete answer, median of {STARTS} (ms): vigil {fmt(median(st['vigil']))} "
        f"(all {len(stack.check_names())} checks [+]); blackbox_exporter {fmt(median(st['blackbox']))} "
        f"(first /probe success); postgres_exporter {fmt(median(st['postgres_exporter']))} (first pg_up 1)")
    add(f"  vigil starts: {[round(x) for x in st['vigil']]}")
    add("")
    okv = ratio(m(v, "rss_kib"), m(e, "rss_kib")) < 1 and median(cv) < median(ce)
    add(f"verdict: vigil {'uses less' if okv else 'does NOT use less'} RSS and idle CPU than the two exporters "
        f"(RSS ratio {fmt(ratio(m(v, 'rss_kib'), m(e, 'rss_kib')), 2)}, CPU ratio {fmt(ratio(median(cv), median(ce)), 2)})"
        f" while it also checks the JWT secret end to end, the gateway's pool/error ratio/p95 and the pod's CPU/memory")
    if not all(r["all_success"] for r in e):
        add("WARNING: some exporter probe did not succeed in a round (see results.json)")
    loads = [float(r["load"].split()[0]) for r in v + e]
    if max(loads) > 0.5 * (os.cpu_count() or 2):
        add(f"NOTE: load average up to {max(loads)} during the run: other processes shared the CPU; "
            "CPU figures are noisy (ratios less so)")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main():
    stack.install_signal_handlers()
    stack.check_build((stack.VIGIL_BIN,))
    out = stack.out_dir("compare")
    t0 = time.monotonic()
    res = {"vigil": [], "vigil_equal": [], "exporters": [], "per_check": {}, "startup": {"vigil": [], "blackbox": [],
                                                                      "postgres_exporter": []},
           "params": {"interval": INTERVAL, "window": WINDOW, "rounds": ROUNDS, "starts": STARTS,
                      "scrapes": SCRAPES, "pg_scrapes": PG_SCRAPES}}
    with stack.Stack(out) as s:
        for rnd in range(ROUNDS):
            print(f"round {rnd + 1}/{ROUNDS}: vigil idle ({WINDOW:g}s) ...", flush=True)
            idle_vigil(s, rnd, res)
            print(f"round {rnd + 1}/{ROUNDS}: exporters idle ({WINDOW:g}s) ...", flush=True)
            idle_exporters(s, out, rnd, res)
            if EQUAL:
                print(f"round {rnd + 1}/{ROUNDS}: vigil with the exporters' probes only ({WINDOW:g}s) ...", flush=True)
                idle_vigil(s, rnd, res, key="vigil_equal", config=equal_config(s))
        print("cost per check run ...", flush=True)
        per_check_cost(s, res)
        print(f"startup x{STARTS} ...", flush=True)
        startup(s, out, res)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    print()
    report(res, out)
    print(f"\ntotal {time.monotonic() - t0:.0f}s; raw output in {out}")


if __name__ == "__main__":
    main()
