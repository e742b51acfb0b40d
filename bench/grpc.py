#!/usr/bin/env python3
"""CPU per gRPC health check: vigil's grpc:// upstream beside blackbox_exporter's grpc prober,
both asking the same grpcio health server (tests/peers/grpc_health.py, grpcio +
grpcio-health-checking) `grpc.health.v1.Health/Check`, one after the other (never at the same
time: 2 cores), over fresh connections, at the same interval.

  python3 bench/grpc.py             # about 2.5 minutes at the defaults, once built

Environment (defaults): INTERVAL=1 (seconds between checks), DURATION=60 (seconds measured per
tool and round), ROUNDS=1, TLS=0 (1: grpcs:// with a certificate made here, blackbox with
tls: true and the CA), VIGIL_BIN (default $CARGO_TARGET_DIR/release/vigil, else
target/release/vigil).

- vigil: one `[[upstream]]` `grpc://127.0.0.1:<port>` at INTERVAL, the system check off; its
  /metrics scraped every INTERVAL too (Prometheus would). After a warm-up of 2 intervals, CPU
  over DURATION (utime + stime from /proc/PID/stat, all threads; schedstat per thread as the
  precise figure) divided by the check runs in the window (vigil_check_runs_total delta).
- blackbox_exporter: module `grpc` (prober grpc, ip4, the same timeout), `/probe` asked every
  INTERVAL by a Prometheus-like loop; CPU over DURATION divided by the probes answered with
  probe_success 1. Serving the /probe request is part of its cost, as serving /metrics is of
  vigil's.
- The grpcio server's own CPU per call under each, for scale.

Prints CPU per run (µs), the ratio blackbox / vigil, RSS, and the load average before and
after. Raw outputs (configs, logs, results.json) in target/bench/grpc-<timestamp>/.
"""

import importlib.metadata
import json
import os
import select
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing stack
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402
from stack import CpuWindow, ProcStats, RssSampler, ScrapeLoop, env_num, median, metric_sum  # noqa: E402

INTERVAL = env_num("INTERVAL", 1, float)
DURATION = env_num("DURATION", 60, float)
ROUNDS = env_num("ROUNDS", 1)
TLS = os.environ.get("TLS", "0") not in ("", "0")
WARMUP = 2 * INTERVAL
TIMEOUT = min(INTERVAL, 1.0)
PEER = os.path.join(stack.REPO, "tests", "peers", "grpc_health.py")
VIGIL_BIN = os.environ.get("VIGIL_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(stack.REPO, "target")), "release", "vigil")


class GrpcPeer:
    """tests/peers/grpc_health.py, started with ``args``; ``.port``, ``.pid``, ``.stop()``."""

    def __init__(self, out, args=()):
        log = open(os.path.join(out, "grpc_peer.log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen([sys.executable, PEER, *args], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, env=stack.clean_env())
        finally:
            log.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)  # importing grpcio takes a moment
        line = self.proc.stdout.readline().decode().strip() if ready else "nothing within 30s"
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the gRPC peer said {line!r} instead of READY <port>")
        self.port = int(line.split()[1])

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.stdin:
            self.proc.stdin.close()  # the peer exits when its stdin closes
        stack.stop_process(self.proc, 5)


def make_tls(out):
    """A CA and a leaf for 127.0.0.1 with openssl: (ca, cert, key) paths."""
    paths = [os.path.join(out, n) for n in ("ca.pem", "ca.key", "cert.pem", "key.pem", "leaf.csr", "ext.cnf")]
    ca, ca_key, cert, key, csr, ext = paths
    with open(ext, "w", encoding="ascii") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")

    def run(*argv):
        subprocess.run(argv, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "30", "-subj", "/CN=bench-ca")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "30", "-extfile", ext)
    return ca, cert, key


def measure_vigil(out, peer, ca, rnd):
    scheme = "grpcs" if TLS else "grpc"
    ca_line = f'ca_file = "{ca}"\n' if ca else ""
    config = (f'[system]\nenabled = false\n[shutdown]\ndrain = "0s"\n'
              f'[[upstream]]\nname = "g"\nurl = "{scheme}://127.0.0.1:{peer.port}"\n'
              f'interval = "{int(INTERVAL * 1000)}ms"\ntimeout = "{int(TIMEOUT * 1000)}ms"\n{ca_line}')
    v = stack.Vigil(out, config, name=f"vigil-{rnd}", binary=VIGIL_BIN)
    v.start()
    try:
        v.wait_ready(30)
        loop = ScrapeLoop([f"http://127.0.0.1:{v.port}/metrics"], INTERVAL)
        time.sleep(WARMUP)
        runs0 = metric_sum(v.metrics(), "vigil_check_runs_total", 'check="upstream:g",result="pass"')
        rss = RssSampler([v.pid])
        w, server = CpuWindow(v.pid), CpuWindow(peer.pid)
        time.sleep(DURATION)
        w.stop()
        server.stop()
        rss.stop()
        text = v.metrics()
        loop.stop()
        runs = metric_sum(text, "vigil_check_runs_total", 'check="upstream:g",result="pass"') - runs0
        failed = metric_sum(text, "vigil_check_runs_total", 'check="upstream:g",result="fail"')
        serving = 'vigil_upstream_grpc_serving_status{status="SERVING",upstream="g"} 1' in text
        if runs <= 0 or not serving:
            raise RuntimeError(f"vigil's gRPC check did not pass (failed runs {failed}):\n{v.logs()[-2000:]}")
        return {"cpu_s": w.cpu_s, "ticks_s": w.ticks_s, "runs": runs, "failed_runs": failed,
                "rss_kib": rss.median_kib, "server_cpu_s": server.cpu_s, "wall_s": w.wall_s}
    finally:
        v.stop()


def measure_blackbox(out, peer, ca, rnd):
    binary = shutil.which("prometheus-blackbox-exporter")
    if not binary:
        sys.exit("apt-get install -y prometheus-blackbox-exporter")
    conf = os.path.join(out, "blackbox.yml")
    tls = f"      tls: true\n      tls_config:\n        ca_file: {ca}\n" if TLS else "      tls: false\n"
    with open(conf, "w", encoding="ascii") as f:
        f.write(f"modules:\n  grpc:\n    prober: grpc\n    timeout: {TIMEOUT}s\n    grpc:\n"
                f"      preferred_ip_protocol: ip4\n{tls}")
    bb = stack.Exporter(out, f"blackbox-{rnd}",
                        [binary, f"--config.file={conf}", "--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    probe = f"/probe?module=grpc&target=127.0.0.1:{peer.port}"
    bb.start(probe, lambda b: b"\nprobe_success 1" in b)
    try:
        loop = ScrapeLoop([bb.url(probe)], INTERVAL)
        time.sleep(WARMUP)
        ok0 = loop.total()
        rss = RssSampler([bb.pid])
        w, server = CpuWindow(bb.pid), CpuWindow(peer.pid)
        time.sleep(DURATION)
        w.stop()
        server.stop()
        rss.stop()
        probes = loop.total() - ok0
        last = loop.last.get(bb.url(probe), b"")
        loop.stop()
        if probes <= 0 or b"\nprobe_success 1" not in last:
            raise RuntimeError(f"blackbox_exporter's grpc probe did not succeed: {last[-500:]!r}")
        return {"cpu_s": w.cpu_s, "ticks_s": w.ticks_s, "runs": probes, "rss_kib": rss.median_kib,
                "server_cpu_s": server.cpu_s, "wall_s": w.wall_s,
                "probe_success": b"\nprobe_success 1" in last}
    finally:
        bb.stop()


def main():
    stack.install_signal_handlers()
    stack.check_build((VIGIL_BIN,))
    out = stack.out_dir("grpc")
    load0 = stack.loadavg()
    res = {"vigil": [], "blackbox": [], "interval_s": INTERVAL, "duration_s": DURATION, "tls": TLS}
    ca = cert = key = None
    if TLS:
        ca, cert, key = make_tls(out)
    peer = GrpcPeer(out, ["--cert", cert, "--key", key] if TLS else [])
    try:
        for rnd in range(ROUNDS):
            res["vigil"].append(measure_vigil(out, peer, ca, rnd))
            res["blackbox"].append(measure_blackbox(out, peer, ca, rnd))
    finally:
        peer.stop()
    load1 = stack.loadavg()
    res["load"] = [load0, load1]
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)

    def per_run_us(rows, key="cpu_s"):
        return median([r[key] / r["runs"] * 1e6 for r in rows])

    v_us, b_us = per_run_us(res["vigil"]), per_run_us(res["blackbox"])
    lines = [
        f"gRPC health check every {INTERVAL:g}s for {DURATION:g}s, {ROUNDS} round(s), "
        f"{'grpcs (TLS)' if TLS else 'grpc (h2c)'}, grpcio {peer_version()} server",
        f"  vigil             {v_us:8.0f} µs CPU per run   runs {median([r['runs'] for r in res['vigil']]):.0f}"
        f"   RSS {median([r['rss_kib'] for r in res['vigil']]) / 1024:.1f} MiB"
        f"   server {per_run_us(res['vigil'], 'server_cpu_s'):.0f} µs per call",
        f"  blackbox_exporter {b_us:8.0f} µs CPU per probe probes {median([r['runs'] for r in res['blackbox']]):.0f}"
        f"   RSS {median([r['rss_kib'] for r in res['blackbox']]) / 1024:.1f} MiB"
        f"   server {per_run_us(res['blackbox'], 'server_cpu_s'):.0f} µs per call",
        f"  blackbox / vigil  {b_us / v_us:8.2f}x",
        f"  load average before {load0}, after {load1}",
        f"  raw: {os.path.relpath(out, stack.REPO)}",
    ]
    summary = "\n".join(lines)
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(summary + "\n")
    print(summary)
    return 0


def peer_version():
    """grpcio's version (by its metadata: `import grpc` here would find this file)."""
    try:
        return importlib.metadata.version("grpcio")
    except importlib.metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
