#!/usr/bin/env python3
"""What a hostile gateway ``/metrics`` costs vigil: peak RSS, CPU per gateway run, run duration,
and ``/livez`` latency meanwhile, per exposition.

    cargo build --release --locked --bin vigil
    python3 bench/hostile.py          # SECONDS_EACH=8 INTERVAL=1s; about 45 s

Each scenario starts a fresh vigil (only ``[gateway]``, ``[system]`` off) against a fake gateway
on 127.0.0.1 serving one exposition (all under the 4 MiB scrape cap), waits for three runs, then
measures ``SECONDS_EACH`` seconds: CPU time of the process ÷ gateway runs in the window,
VmHWM, the median ``vigil_check_duration_seconds`` run time, and ``/livez`` polled every 50 ms.
Standard library only; loopback only; every process stopped on exit.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

SECONDS_EACH = stack.env_num("SECONDS_EACH", 8.0, float)
INTERVAL = os.environ.get("INTERVAL", "1s")

POOL = "connection_pool_in_use 5\nconnection_pool_max 20\nconnection_pool_waiting 0\n"


def histogram_buckets(n):
    lines = [f'http_request_duration_seconds_bucket{{le="{i / 1000}"}} {i}' for i in range(n)]
    return POOL + "\n".join(lines) + f'\nhttp_request_duration_seconds_bucket{{le="+Inf"}} {n}\n'


SCENARIOS = [
    ("a normal exposition (pool + 12 buckets)", lambda: histogram_buckets(12)),
    ("50,000 distinct le bounds (2.1 MB)", lambda: histogram_buckets(50_000)),
    ("100,000 labelled pool series (3.6 MB)",
     lambda: "".join(f'connection_pool_in_use{{pool="p{i}"}} 1\n' for i in range(100_000))),
    ("100,000 series of other metrics (3.3 MB)",
     lambda: POOL + "".join(f'unrelated_series{{n="{i}"}} 1\n' for i in range(100_000))),
]


class Gateway(stack._HttpBase):
    def __init__(self, body):
        super().__init__()
        self.body = body.encode()

    def route(self, req):
        if req.path == "/healthz":
            req.reply(200, "ok\n")
        elif req.path == "/metrics":
            req.reply(200, self.body, "text/plain; version=0.0.4")
        else:
            req.reply(404, "not found\n")


def gateway_runs(vigil):
    text = vigil.metrics()
    return stack.metric_sum(text, "vigil_check_runs_total", 'check="gateway"')


def run_seconds(vigil):
    """The mean run duration over the process' life (sum / count of the histogram)."""
    text = vigil.metrics()
    total = stack.metric_sum(text, "vigil_check_duration_seconds_sum", 'check="gateway"')
    count = stack.metric_sum(text, "vigil_check_duration_seconds_count", 'check="gateway"')
    return total / count if count else float("nan")


def measure(out, name, body):
    with Gateway(body) as gateway:
        config = (f'[system]\nenabled = false\n[gateway]\nhealth_url = "{gateway.base()}/healthz"\n'
                  f'metrics_url = "{gateway.base()}/metrics"\ninterval = "{INTERVAL}"\ntimeout = "{INTERVAL}"\n')
        vigil = stack.Vigil(out, config, name=f"vigil-{len(os.listdir(out))}").start()
        try:
            stack.wait_until(lambda: gateway_runs(vigil) >= 3, 30, "three gateway runs")
            livez = []
            stop = threading.Event()

            def poll():
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        vigil.get("/livez", timeout=5)
                    except OSError:
                        pass
                    livez.append(time.monotonic() - started)
                    stop.wait(0.05)

            poller = threading.Thread(target=poll, daemon=True)
            runs0, cpu0 = gateway_runs(vigil), stack.ProcStats.cpu_seconds(vigil.pid)
            poller.start()
            time.sleep(SECONDS_EACH)
            stop.set()
            poller.join(timeout=10)
            runs1, cpu1 = gateway_runs(vigil), stack.ProcStats.cpu_seconds(vigil.pid)
            runs = max(runs1 - runs0, 1)
            reason = vigil.get("/readyz?verbose")[1].splitlines()[0]
            livez.sort()
            return {
                "scenario": name,
                "cpu_ms_per_run": (cpu1 - cpu0) / runs * 1000,
                "runs": runs1 - runs0,
                "run_ms": run_seconds(vigil) * 1000,
                "peak_rss_mib": stack.ProcStats.hwm_kib(vigil.pid) / 1024,
                "livez_p99_ms": livez[int(len(livez) * 0.99) - 1] * 1000 if livez else float("nan"),
                "livez_max_ms": livez[-1] * 1000 if livez else float("nan"),
                "line": reason[:110],
            }
        finally:
            vigil.stop()


def main():
    stack.check_build()
    stack.install_signal_handlers()
    out = stack.out_dir("hostile")
    print(f"hostile gateway expositions: INTERVAL={INTERVAL}, {SECONDS_EACH:.0f} s each; load {stack.loadavg()}")
    rows = [measure(out, name, make()) for name, make in SCENARIOS]
    print(f"{'exposition':42} {'CPU/run':>9} {'run':>8} {'peak RSS':>9} {'/livez p99':>10} {'max':>8}")
    for r in rows:
        print(f"{r['scenario']:42} {r['cpu_ms_per_run']:7.1f}ms {r['run_ms']:6.1f}ms {r['peak_rss_mib']:7.1f}MiB "
              f"{r['livez_p99_ms']:8.1f}ms {r['livez_max_ms']:6.1f}ms")
        print(f"    {r['line']}")
    print(f"load average after: {stack.loadavg()}; raw output in {out}")


if __name__ == "__main__":
    main()
