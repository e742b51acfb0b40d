#!/usr/bin/env python3
"""The fleet rule at scale: REPLICAS (50) vigil replicas on 127.0.0.10 … (one port, loopback
only), each listing the others in ``[fleet] peers``, over one PostgreSQL that is killed
(SIGKILL) and started again ROUNDS (3) times.

Figures, per round:
- time from the kill to every replica holding (``/readyz`` 200 with the ``[+]fleet warn: panic``
  line), and to every replica out of the panic after the restart;
- peer requests per replica per consultation (one consultation per failing run of the check);
- ``/readyz`` status changes of every replica during the steady outage (OUTAGE_S, 60 s in the
  first round, 10 s after), sampled every 100 ms, after every replica holds;
- answers 503 before a replica's first panic decision (the first-failure race, see README);
- CPU (% of one core) and RSS per replica while in panic (median and max over the replicas).

``python3 bench/fleet.py`` (REPLICAS=50 ROUNDS=3 INTERVAL=1s OUTAGE_S=60 LATER_OUTAGE_S=10). Needs
``target/release/vigil`` (cargo build --release --locked --bin vigil) and PostgreSQL's binaries.
Standard library only (and bench/stack.py).
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

REPLICAS = int(os.environ.get("REPLICAS", "50"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
INTERVAL = os.environ.get("INTERVAL", "1s")
OUTAGE_S = float(os.environ.get("OUTAGE_S", "60"))
LATER_OUTAGE_S = float(os.environ.get("LATER_OUTAGE_S", "10"))
SAMPLE_S = 0.1
PANIC = "[+]fleet warn: panic: postgres"


def ip(i):
    return f"127.0.0.{10 + i}"


def get(host, port, path, timeout=2.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def port_free_everywhere(n):
    import socket
    for _ in range(100):
        port = stack.free_port()
        ok = True
        for i in range(n):
            with socket.socket() as s:
                try:
                    s.bind((ip(i), port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on every replica address")


class Replica:
    def __init__(self, out, i, port, url):
        self.i, self.host, self.port = i, ip(i), port
        peers = ", ".join(f'"{ip(j)}:{port}"' for j in range(REPLICAS) if j != i)
        self.config = os.path.join(out, f"replica-{i}.toml")
        self.log = os.path.join(out, f"replica-{i}.log")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f'listen = "{self.host}:{port}"\n[defaults]\ninterval = "{INTERVAL}"\ntimeout = "800ms"\n'
                    f'[system]\nenabled = false\n[postgres]\nurl = "{url}"\npool_size = 1\n'
                    f'[fleet]\npeers = [{peers}]\n')
        self.proc = None

    def start(self):
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen([stack.VIGIL_BIN, "run", "--config", self.config],
                                         env=stack.clean_env({"VIGIL_LOG_FORMAT": "json", "RUST_LOG": "info"}),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def readyz(self):
        status, body = get(self.host, self.port, "/readyz?verbose", timeout=1.0)
        return status, PANIC in body

    def fleet(self):
        status, body = get(self.host, self.port, "/diag?format=json", timeout=5.0)
        return json.loads(body)["vigil"]["fleet"] if status else {}

    def stop(self):
        stack.stop_process(self.proc)


class Sampler:
    """Polls every replica's /readyz?verbose every 100 ms, keeping (time, status, panic)."""

    def __init__(self, replicas):
        self.replicas = replicas
        self.samples = [[] for _ in replicas]
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(r,), daemon=True) for r in replicas]

    def run(self, replica):
        into = self.samples[replica.i]
        while not self.stop_event.is_set():
            status, panic = replica.readyz()
            into.append((time.monotonic(), status, panic))
            self.stop_event.wait(SAMPLE_S)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(5)


def changes(samples, start, end):
    window = [s for s in samples if start <= s[0] <= end and s[1] != 0]
    return sum(1 for a, b in zip(window, window[1:]) if a[1] != b[1]), len(window)


def main():
    stack.install_signal_handlers()
    stack.check_build()
    out = stack.out_dir("fleet")
    port = port_free_everywhere(REPLICAS)
    replicas = []
    with stack.PgCluster(max_connections=REPLICAS * 2 + 20) as pg:
        try:
            replicas = [Replica(out, i, port, pg.url) for i in range(REPLICAS)]
            for r in replicas:
                r.start()
            stack.wait_until(lambda: all(r.readyz() == (200, False) for r in replicas), 60,
                             "every replica ready without a panic")
            print(f"{REPLICAS} replicas on {ip(0)}..{ip(REPLICAS - 1)}:{port}, interval {INTERVAL}, "
                  f"PostgreSQL on 127.0.0.1:{pg.port}; outputs in {out}")
            rounds = []
            for n in range(ROUNDS):
                outage = OUTAGE_S if n == 0 else LATER_OUTAGE_S
                before = [r.fleet() for r in replicas]
                with Sampler(replicas) as sampler:
                    killed = pg.kill9()
                    stack.wait_until(lambda: all(r.readyz() == (200, True) for r in replicas), 30,
                                     "every replica holding")
                    holding = time.monotonic()
                    cpu0 = [stack.ProcStats.cpu_seconds(r.proc.pid) for r in replicas]
                    time.sleep(outage)  # the steady outage being measured
                    steady_end = time.monotonic()
                    cpu = [(stack.ProcStats.cpu_seconds(r.proc.pid) - c) / (steady_end - holding) * 100
                           for r, c in zip(replicas, cpu0)]
                    rss = [stack.ProcStats.rss_kib(r.proc.pid) / 1024 for r in replicas]
                    during = [r.fleet() for r in replicas]
                    restarted = time.monotonic()
                    pg.start()
                    stack.wait_until(lambda: all(r.readyz() == (200, False) for r in replicas), 30,
                                     "every replica out of the panic")
                    recovered = time.monotonic()
                per_consult = []
                for b, d in zip(before, during):
                    consults = d["consultations"] - b["consultations"]
                    if consults:
                        per_consult.append((d["peer_requests"] - b["peer_requests"]) / consults)
                steady = [changes(s, holding, steady_end) for s in sampler.samples]
                early_503 = []
                for s in sampler.samples:
                    first = next((k for k, x in enumerate(s) if x[0] >= killed and x[2]), None)
                    early_503.append(sum(1 for x in s[:first] if x[0] >= killed and x[1] == 503) if first is not None else 0)
                after_first_503 = 0
                for s in sampler.samples:
                    first = next((k for k, x in enumerate(s) if x[0] >= killed and x[2]), None)
                    if first is not None:
                        after_first_503 += sum(1 for x in s[first:] if x[1] == 503)
                result = {
                    "round": n + 1,
                    "kill_to_all_holding_s": round(holding - killed, 3),
                    "restart_to_all_recovered_s": round(recovered - restarted, 3),
                    "peer_requests_per_consultation_median": stack.median(per_consult),
                    "peer_requests_per_consultation_max": max(per_consult) if per_consult else None,
                    "steady_outage_s": outage,
                    "readyz_changes_during_steady_outage": sum(c for c, _ in steady),
                    "samples_during_steady_outage": sum(k for _, k in steady),
                    "replicas_with_503_before_first_decision": sum(1 for e in early_503 if e),
                    "answers_503_before_first_decision_max": max(early_503),
                    "answers_503_after_first_decision": after_first_503,
                    "cpu_percent_median": round(stack.median(cpu), 2),
                    "cpu_percent_max": round(max(cpu), 2),
                    "rss_mib_median": round(stack.median(rss), 1),
                    "rss_mib_max": round(max(rss), 1),
                }
                rounds.append(result)
                print(json.dumps(result))
            with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
                json.dump(rounds, f, indent=2)
            bad = [r for r in rounds if r["readyz_changes_during_steady_outage"] or r["answers_503_after_first_decision"]]
            print("verdict:", "PASS: no /readyz change in any steady outage, no 503 after a first decision"
                  if not bad else f"FAIL in rounds {[r['round'] for r in bad]}")
            return 1 if bad else 0
        finally:
            for r in replicas:
                r.stop()


if __name__ == "__main__":
    sys.exit(main())
