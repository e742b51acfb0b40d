#!/usr/bin/env python3
"""CPU per run of the gateway check, for one or more vigil binaries side by side (before and
after a change): vigil with only [gateway] (health_url and metrics_url, as compare.py's
per-check row) against a fake gateway whose /metrics grows by the same step at every scrape,
so that every run reads the same exposition shape and finds the same increase.

  python3 bench/gateway_cpu.py BIN [BIN ...]     # about 1 minute per binary and mode

Two measures (MODE, both by default):

- cpu: interval and timeout 200 ms (compare.py's per-check settings); CPU of the whole process
  (schedstat) / gateway runs (vigil_check_runs_total), ROUNDS windows of WINDOW seconds after
  WARMUP seconds, median. Moves by 10-25 % with the machine's load.
- callgrind: the same process under valgrind --tool=callgrind at a 1 s interval; the
  instructions (Ir) of every thread from the gateway's WARM-th scrape to its (WARM + RUNS)-th,
  / RUNS. Deterministic to a fraction of a percent; includes the runtime's own timers and the
  HTTP requests, not just the check's code.

Environment: MODE (cpu,callgrind), ROUNDS (3), WINDOW (2), WARMUP (2), WARM (5), RUNS (30),
ROUTES (0: bench/stack.py's FakeGateway exposition, 3 series of http_requests_total and a
12-bucket histogram; N: the requests spread over N values of a `route` label), EXTRA (more
[gateway] lines, e.g. 'group_by = "route"', given to every binary: only for binaries that
know the keys).
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402
from stack import CpuWindow, env_num, median, metric_sum  # noqa: E402

MODES = os.environ.get("MODE", "cpu,callgrind").split(",")
ROUNDS = env_num("ROUNDS", 3)
WINDOW = env_num("WINDOW", 2, float)
WARMUP = env_num("WARMUP", 2, float)
WARM = env_num("WARM", 5)
RUNS = env_num("RUNS", 30)
ROUTES = int(os.environ.get("ROUTES", "0"))
EXTRA = os.environ.get("EXTRA", "").replace("\\n", "\n")

BUCKETS = [("0.005", 0.2), ("0.01", 0.45), ("0.025", 0.7), ("0.05", 0.85), ("0.1", 0.93), ("0.25", 0.97),
           ("0.5", 0.99), ("1", 0.995), ("2.5", 0.999), ("5", 1.0)]


class StepGateway(stack.FakeGateway):
    """stack.FakeGateway whose counters grow by 100 requests per scrape (0.5 % 5xx, 1 % 401),
    not with time: the same exposition shape and the same increase at every run."""

    def __init__(self):
        super().__init__(b"bench-secret-not-used-here")
        self.scrapes = 0

    def metrics_text(self):
        self.scrapes += 1
        total = 100 * self.scrapes
        lines = [
            "# TYPE connection_pool_in_use gauge", "connection_pool_in_use 4",
            "# TYPE connection_pool_max gauge", "connection_pool_max 20",
            "# TYPE connection_pool_waiting gauge", "connection_pool_waiting 0",
            "# TYPE http_requests_total counter",
        ]
        routes = [f'route="/r{i}",' for i in range(ROUTES)] or [""]
        for route in routes:
            n = total // len(routes)
            e5, e4 = n // 200, n // 100
            lines += [f'http_requests_total{{{route}status="200"}} {n - e5 - e4}',
                      f'http_requests_total{{{route}status="401"}} {e4}',
                      f'http_requests_total{{{route}status="503"}} {e5}']
        lines.append("# TYPE http_request_duration_seconds histogram")
        for le, share in BUCKETS:
            lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {int(total * share)}')
        lines += [f'http_request_duration_seconds_bucket{{le="+Inf"}} {total}',
                  f"http_request_duration_seconds_sum {total * 0.03:.3f}",
                  f"http_request_duration_seconds_count {total}"]
        return "\n".join(lines) + "\n"


def config(gateway, interval):
    return (f'[defaults]\ninterval = "{interval}"\ntimeout = "{interval}"\n[shutdown]\ndrain = "0s"\n'
            f'[system]\nenabled = false\n[gateway]\nhealth_url = "{gateway.health_url}"\n'
            f'metrics_url = "{gateway.metrics_url}"\n{EXTRA}\n')


def runs(v, result=""):
    """The gateway check's runs so far (with ``result``: of that result only; it is the only check)."""
    return metric_sum(v.get("/metrics")[1], "vigil_check_runs_total", result)


def cpu(binary, out):
    gateway = StepGateway()
    v = stack.Vigil(out, config(gateway, "200ms"), name=f"vigil-cpu-{len(os.listdir(out))}", binary=binary)
    try:
        v.start()
        v.wait_ready(20)
        time.sleep(WARMUP)
        per_run, failed0 = [], runs(v, 'result="fail"')
        for _ in range(ROUNDS):
            r0 = runs(v)
            w = CpuWindow(v.pid)
            time.sleep(WINDOW)
            w.stop()
            r1 = runs(v)
            if r1 > r0:
                per_run.append(w.sched_s / (r1 - r0) * 1e6)
        return {"us_per_run": median(per_run), "rounds": per_run, "failed": runs(v, 'result="fail"') - failed0}
    finally:
        v.stop()
        gateway.close()


def callgrind(binary, out):
    gateway = StepGateway()
    port = stack.free_port()
    tag = f"cg-{len(os.listdir(out))}"
    path = os.path.join(out, f"{tag}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'listen = "127.0.0.1:{port}"\n{config(gateway, "1s")}')
    dump = os.path.join(out, f"{tag}.callgrind")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", "--dump-instr=no",
           binary, "run", "--config", path]
    log = open(os.path.join(out, f"{tag}.log"), "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, env=stack.clean_env({"VIGIL_LOG_FORMAT": "json"}), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, cwd=out)
    log.close()
    try:
        scraped = lambda n: lambda: gateway.scrapes >= n  # noqa: E731
        stack.wait_until(scraped(WARM), 120, f"{WARM} scrapes under callgrind")
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=60)
        first = gateway.scrapes
        stack.wait_until(scraped(first + RUNS), RUNS * 5 + 60, f"{RUNS} more scrapes")
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True, timeout=60)
        done = gateway.scrapes
        stack.wait_until(lambda: any(n.startswith(f"{tag}.callgrind.") for n in os.listdir(out)), 60, "the dump")
        text = "".join(open(os.path.join(out, n), encoding="utf-8", errors="replace").read()
                       for n in os.listdir(out) if n.startswith(f"{tag}.callgrind."))
        ir = sum(int(m) for m in re.findall(r"^(?:summary|totals): (\d+)", text, re.M)[:1])
        return {"ir_per_run": ir / (done - first), "runs": done - first, "ir": ir}
    finally:
        stack.stop_process(proc)
        gateway.close()


def main():
    binaries = sys.argv[1:] or [stack.VIGIL_BIN]
    stack.check_build(binaries)
    out = tempfile.mkdtemp(prefix="gateway-cpu-", dir=stack.out_dir("gateway_cpu"))
    print(f"load before: {stack.loadavg()}; ROUTES={ROUTES} EXTRA={EXTRA!r}", flush=True)
    for binary in binaries:
        for mode in MODES:
            result = cpu(binary, out) if mode == "cpu" else callgrind(binary, out)
            print(f"{binary} {mode}: {result}", flush=True)
    print(f"load after: {stack.loadavg()}; raw output in {out}")


if __name__ == "__main__":
    main()
