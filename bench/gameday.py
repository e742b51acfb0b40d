#!/usr/bin/env python3
"""Game day: does vigil shorten an incident? Each cause the runbook's three incidents (503s, high
latency, 401s) can have is injected, one at a time, into a real stack on 127.0.0.1, and the
script records whether and when the failing replica's text ``/diag`` names the cause **in its
first 10 lines** (what a person paged at night reads first), with the line that named it, and
what ``vigil fleet`` showed (which replicas). A cause vigil cannot name yet scores "no".

The stack (everything on loopback, stopped on exit, also on Ctrl-C or SIGTERM):

- PostgreSQL (bench/stack.py's PgCluster; trust on 127.0.0.1 so that the script's own small
  wire-protocol client needs no password), reached through a TCP proxy standing for the
  database's Service, so that a failover can point it at a streaming standby;
- the api-gateway application: a Python server with a real pool of PostgreSQL connections
  (``connection_pool_in_use/_max/_waiting``), ``http_requests_total{status,route}``, a latency
  histogram, ``/api/validate`` (HS256 with the secret it loaded at its start, like a gateway
  that does not reload it), ``/api/orders`` and ``/api/report`` (a slow report holding a pool
  connection);
- three real HAProxy processes from Debian, one per "pod" (the gateway container), each routing
  ``/healthz`` and ``/api/*`` to the application and ``/orders``, ``/payments`` to two test
  upstreams, with its Prometheus exporter on ``/metrics``;
- the fake Kubernetes API of tests/peers/fake_kube_api.py (real HTTPS, schema-validated) holding
  the three pods;
- three vigil replicas on 127.0.0.2-4 with one port, ``[fleet]`` listing the others, every
  check configured (system off: it warns on a busy machine), at a 1 s interval;
- background traffic: valid requests to ``/api/orders`` through every HAProxy.

Causes (CAUSES=a,b,... to run some; default all, in this order):

  db-killed        kill -9 of the PostgreSQL postmaster
  lock-pileup      an idle transaction (application_name batch-import) holds a row lock; three
                   sessions queue behind it
  conns-taken      another application (report-runner) takes every free connection
  pool-exhausted   slow reports hold every connection of the gateway's pool; requests wait
  upstream-slow    upstream orders answers after 1.5 s (its p95 limit is 1 s)
  upstream-503     upstream payments answers 503 {"error":"no healthy upstream"}
  jwt-rotated      the JWT secret is rotated; the gateway keeps the old one
  401-surge        a client floods /api/orders with bad tokens (401s on one route)
  standby          the database Service fails over to a standby (vigil sets require_primary
                   when it knows the key)
  one-replica      replica 3's gateway loses its backend (HAProxy answers 503); the others pass
  close-wait       the database closes 20 connections an application never closes (CLOSE_WAIT)
  gateway-oom      replica 1's gateway (HAProxy) is SIGKILLed and restarted; its pod reads
                   OOMKilled, as the kubelet reports it (last: the pod warns for a minute after)

For each: inject, poll the target replica's ``/diag`` (text) every 250 ms up to DEADLINE_S
(default 30) for a line among the first 10 that names the cause, run ``vigil fleet --output
json`` once, repair, and wait until every replica is ready again. Configuration keys that the
binary does not know yet (issue 21's lock_wait, require_primary; issue 22's traffic_metrics,
group_by, [sockets]) are probed with ``vigil validate`` and left out when refused, and the
report says so.

``python3 bench/gameday.py`` (VIGIL_BIN, default target/release/vigil; DEADLINE_S; CAUSES).
Needs PostgreSQL's binaries, haproxy, openssl, python3's kubernetes-validate (.ci/deps.sh).
Standard library only otherwise. Raw output in target/bench/gameday-<timestamp>/.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the worktree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402 - after the path insert

VIGIL_BIN = os.environ.get("VIGIL_BIN", stack.VIGIL_BIN)
DEADLINE_S = float(os.environ.get("DEADLINE_S", "30"))
HEAD_LINES = 10
POLL_S = 0.25
FAKE_KUBE = os.path.join(stack.REPO, "tests", "peers", "fake_kube_api.py")
NAMESPACE = "api-gateway"
POOL_SIZE = 8
MAX_CONNECTIONS = 50
REPLICAS = 3


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- PostgreSQL wire

class PgError(Exception):
    pass


class PgConn:
    """A PostgreSQL connection speaking the simple query protocol by hand (trust auth only):
    enough to hold connections, transactions and locks with a chosen application_name."""

    def __init__(self, port, app, user="gateway", db="gateway", timeout=600.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(timeout)
        params = f"user\0{user}\0database\0{db}\0application_name\0{app}\0\0".encode()
        body = struct.pack("!I", 196608) + params
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        self._until_ready()

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise PgError("the server closed the connection")
            data += chunk
        return data

    def _message(self):
        kind = self._exact(1)
        (length,) = struct.unpack("!I", self._exact(4))
        return kind, self._exact(length - 4)

    @staticmethod
    def _error_text(payload):
        fields = dict((f[:1], f[1:]) for f in payload.split(b"\0") if f)
        return fields.get(b"M", b"?").decode(errors="replace")

    def _until_ready(self):
        rows, error = [], None
        while True:
            kind, payload = self._message()
            if kind == b"R" and struct.unpack("!I", payload[:4])[0] != 0:
                raise PgError("the server asks for a password: the game day needs trust on 127.0.0.1")
            if kind == b"E":
                error = self._error_text(payload)
            elif kind == b"D":
                (count,) = struct.unpack("!H", payload[:2])
                offset, row = 2, []
                for _ in range(count):
                    (size,) = struct.unpack("!i", payload[offset:offset + 4])
                    offset += 4
                    row.append(None if size < 0 else payload[offset:offset + size].decode())
                    offset += max(size, 0)
                rows.append(row)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return rows

    def query(self, sql):
        body = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        return self._until_ready()

    def close(self):
        try:
            self.sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        self.sock.close()


# ----------------------------------------------------------------------------- the DB Service

class TcpProxy:
    """The database's Service: 127.0.0.1:<port> forwarded to a PostgreSQL port. ``switch(port)``
    points it elsewhere and cuts every open connection (a failover). When the server closes a
    connection, the client's side is closed too: a client that never closes its socket is left
    in CLOSE_WAIT, as with a direct connection."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.pairs = set()
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                # What a Service in front of a dead pod does: the connection is refused.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            server.settimeout(None)
            pair = (client, server)
            with self.lock:
                self.pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        client, server = pair
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1.0)
                if self.stopping or pair not in self.pairs:
                    break
                done = False
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        done = True
                        break
                    (server if sock is client else client).sendall(data)
                if done:
                    break
        except OSError:
            pass
        self._close(pair)

    def _close(self, pair):
        with self.lock:
            self.pairs.discard(pair)
        for sock in pair:
            try:
                sock.close()
            except OSError:
                pass

    def switch(self, target):
        self.target = target
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._close(pair)

    def close(self):
        self.stopping = True
        self.listener.close()
        self.switch(self.target)


# ----------------------------------------------------------------------------- JWT

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_hs256(key, lifetime_s=300):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"iss": stack.JWT_ISSUER, "aud": stack.JWT_AUDIENCE, "sub": "gameday",
                                "exp": int(time.time()) + lifetime_s}).encode())
    signature = hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


# ----------------------------------------------------------------------------- the application

class Application(stack._HttpBase):  # noqa: SLF001 - the bench's own helper
    """The api-gateway application behind HAProxy (see the module docs)."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

    def __init__(self, secret, db_port):
        self.secret = secret
        self.key = secret.read()
        self.db_port = db_port
        self.pool = queue.Queue()
        self.in_use = 0
        self.waiting = 0
        self.counts = {}
        self.hist = [0] * (len(self.BUCKETS) + 1)
        self.hist_sum = 0.0
        self.state = threading.Lock()
        for _ in range(POOL_SIZE):
            self.pool.put(None)  # a slot: connected on first use
        super().__init__()

    def restart_with_current_secret(self):
        self.key = self.secret.read()

    def _count(self, route, status, took):
        with self.state:
            self.counts[(route, status)] = self.counts.get((route, status), 0) + 1
            i = next((i for i, b in enumerate(self.BUCKETS) if took <= b), len(self.BUCKETS))
            self.hist[i] += 1
            self.hist_sum += took

    def _with_pool(self, sql):
        with self.state:
            self.waiting += 1
        try:
            conn = self.pool.get(timeout=10)
        except queue.Empty:
            with self.state:
                self.waiting -= 1
            raise PgError("timed out waiting for a pool connection")
        with self.state:
            self.waiting -= 1
            self.in_use += 1
        try:
            if conn is None:
                conn = PgConn(self.db_port, "api-gateway", timeout=30)
            conn.query(sql)
        except (OSError, PgError):
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            with self.state:
                self.in_use -= 1
            self.pool.put(conn)

    def metrics_text(self):
        with self.state:
            counts = dict(self.counts)
            hist, total_sum = list(self.hist), self.hist_sum
            in_use, waiting = self.in_use, self.waiting
        lines = [
            "# TYPE connection_pool_in_use gauge", f"connection_pool_in_use {in_use}",
            "# TYPE connection_pool_max gauge", f"connection_pool_max {POOL_SIZE}",
            "# TYPE connection_pool_waiting gauge", f"connection_pool_waiting {waiting}",
            "# TYPE http_requests_total counter",
        ]
        for (route, status), n in sorted(counts.items()):
            lines.append(f'http_requests_total{{route="{route}",status="{status}"}} {n}')
        lines.append("# TYPE http_request_duration_seconds histogram")
        cumulative = 0
        for bound, n in zip(self.BUCKETS, hist):
            cumulative += n
            lines.append(f'http_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        cumulative += hist[-1]
        lines += [f'http_request_duration_seconds_bucket{{le="+Inf"}} {cumulative}',
                  f"http_request_duration_seconds_sum {total_sum:.3f}",
                  f"http_request_duration_seconds_count {cumulative}"]
        return "\n".join(lines) + "\n"

    def route(self, req):
        path = req.path.split("?", 1)[0]
        if path == "/healthz":
            req.reply(200, "ok\n")
            return
        if path == "/metrics":
            req.reply(200, self.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
            return
        started = time.monotonic()
        auth = req.headers.get("Authorization", "")
        token_ok = auth.lower().startswith("bearer ") and stack.verify_hs256(auth[7:].strip(), self.key) is None
        if path == "/api/validate":
            status = 200 if token_ok else 401
        elif path in ("/api/orders", "/api/report"):
            if not token_ok:
                status = 401
            else:
                try:
                    self._with_pool("SELECT pg_sleep(3)" if path == "/api/report" else "SELECT 1")
                    status = 200
                except (OSError, PgError):
                    status = 503
        else:
            req.reply(404, "not found\n")
            return
        self._count(path, status, time.monotonic() - started)
        req.reply(status, '{"ok":true}\n' if status == 200 else '{"error":"see status"}\n', "application/json")


class Upstreams(stack._HttpBase):  # noqa: SLF001
    """``/orders/healthz`` and ``/payments/healthz``: ``ok``, ``slow`` (1.5 s) or ``503`` (with a
    JSON body)."""

    def __init__(self):
        self.modes = {"orders": "ok", "payments": "ok"}
        super().__init__()

    def url(self, name):
        return f"{self.base()}/{name}/healthz"

    def route(self, req):
        name = req.path.strip("/").split("/", 1)[0]
        mode = self.modes.get(name)
        if mode is None:
            req.reply(404, "no such upstream\n")
        elif mode == "slow":
            time.sleep(1.5)
            req.reply(200, "ok\n")
        elif mode == "503":
            req.reply(503, '{"error":"no healthy upstream"}', "application/json")
        else:
            req.reply(200, "ok\n")


# ----------------------------------------------------------------------------- HAProxy

class Haproxy:
    """One pod's gateway: a real HAProxy in the foreground, its admin socket for runtime changes."""

    def __init__(self, out, i, app_port, upstream_port):
        self.out, self.i = out, i
        self.port = stack.free_port()
        self.sock_path = os.path.join(out, f"haproxy-{i}.sock")
        self.cfg = os.path.join(out, f"haproxy-{i}.cfg")
        with open(self.cfg, "w", encoding="ascii") as f:
            f.write(f"""global
    maxconn 4000
    stats socket {self.sock_path} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{self.port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    use_backend orders if {{ path_beg /orders }}
    use_backend payments if {{ path_beg /payments }}
    default_backend app
backend app
    server app 127.0.0.1:{app_port}
backend orders
    server orders 127.0.0.1:{upstream_port}
backend payments
    server payments 127.0.0.1:{upstream_port}
""")
        self.proc = None

    def start(self):
        log_file = open(os.path.join(self.out, f"haproxy-{self.i}.log"), "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT)
        finally:
            log_file.close()
        stack.wait_until(lambda: stack.http_get(self.port, "/healthz", timeout=1)[0] == 200, 15,
                         f"haproxy {self.i} to answer")
        return self

    def admin(self, command):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.sock_path)
            s.sendall(command.encode() + b"\n")
            return s.recv(65536).decode(errors="replace")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        stack.stop_process(self.proc, 5)


# ----------------------------------------------------------------------------- fake Kubernetes

def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def pod(i, restarts=0, oom_at=None):
    status = {
        "name": "api-gateway", "ready": True, "restartCount": restarts, "started": True,
        "image": "registry.example/api-gateway:1.4", "imageID": "registry.example/api-gateway@sha256:0123",
        "containerID": f"containerd://gw{i}-{restarts}",
        "state": {"running": {"startedAt": rfc3339(oom_at or time.time() - 600)}},
    }
    if oom_at is not None:
        status["lastState"] = {"terminated": {
            "reason": "OOMKilled", "exitCode": 137, "containerID": f"containerd://gw{i}-{restarts - 1}",
            "startedAt": rfc3339(oom_at - 600), "finishedAt": rfc3339(oom_at)}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"gw-{i}", "namespace": NAMESPACE, "uid": f"3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d1{i}",
                     "labels": {"app": "api-gateway"}},
        "spec": {"containers": [{"name": "api-gateway", "image": "registry.example/api-gateway:1.4",
                                 "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}]},
        "status": {"phase": "Running", "podIP": f"127.0.0.{i + 1}", "containerStatuses": [status]},
    }


def pod_metrics(i):
    return {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": f"gw-{i}", "namespace": NAMESPACE},
            "timestamp": rfc3339(time.time() - 5), "window": "15s",
            "containers": [{"name": "api-gateway", "usage": {"cpu": "120m", "memory": "180Mi"}}]}


class FakeKube:
    """tests/peers/fake_kube_api.py with a throw-away CA made by openssl."""

    def __init__(self, out):
        self.dir = os.path.join(out, "kube")
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir

        def run(*args):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=gameday-ca")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        with open(os.path.join(d, "ext.cnf"), "w", encoding="ascii") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
        self.token = "gameday-token"
        with open(os.path.join(d, "token"), "w", encoding="ascii") as f:
            f.write(self.token)
        self.proc = subprocess.Popen(["python3", FAKE_KUBE, "--cert", os.path.join(d, "server.crt"),
                                      "--key", os.path.join(d, "server.key"), "--token", self.token],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        self.api = int(self.proc.stdout.readline().split()[1])
        self.control = int(self.proc.stdout.readline().split()[1])

    def post(self, path, body):
        data = json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.control, timeout=10)
        try:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            text = answer.read().decode()
            if answer.status != 200:
                raise RuntimeError(f"fake kube {path}: {answer.status} {text}")
        finally:
            conn.close()

    def section(self, i):
        d = self.dir
        return (f'[kubernetes]\napi_url = "https://127.0.0.1:{self.api}"\nca_file = "{d}/ca.crt"\n'
                f'token_file = "{d}/token"\nnamespace = "{NAMESPACE}"\npod = "gw-{i}"\n'
                'container = "api-gateway"\nrestart_window = "1m"\n')

    def close(self):
        stack.stop_process(self.proc, 5)


# ----------------------------------------------------------------------------- vigil replicas

def replica_ip(i):
    return f"127.0.0.{i + 1}"


def port_free_on_replicas():
    for _ in range(100):
        port = stack.free_port()
        ok = True
        for i in range(1, REPLICAS + 1):
            with socket.socket() as s:
                try:
                    s.bind((replica_ip(i), port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on 127.0.0.2-4")


def vigil_env():
    return stack.clean_env({"VIGIL_LOG_FORMAT": "json", "RUST_LOG": "info"})


class Replica:
    def __init__(self, out, i, port, config_body):
        self.i, self.host, self.port = i, replica_ip(i), port
        self.config = os.path.join(out, f"vigil-{i}.toml")
        self.log = os.path.join(out, f"vigil-{i}.log")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f'listen = "{self.host}:{port}"\n{config_body}')
        self.proc = None

    def start(self):
        log_file = open(self.log, "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen([VIGIL_BIN, "run", "--config", self.config], env=vigil_env(),
                                         stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        finally:
            log_file.close()
        return self

    def get(self, path, timeout=2.0):
        status, body = stack.http_get(f"http://{self.host}:{self.port}{path}", timeout=timeout)
        return status, body.decode("utf-8", errors="replace")

    def ready(self):
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def head(self):
        """The first HEAD_LINES lines of the text /diag."""
        try:
            return self.get("/diag")[1].splitlines()[:HEAD_LINES]
        except OSError as e:
            return [f"(no answer: {e})"]

    def stop(self):
        stack.stop_process(self.proc, 10)


def vigil_config(s, i, port, features):
    """Replica ``i``'s configuration; ``features`` are the optional blocks the binary accepts."""
    peers = ", ".join(f'"{replica_ip(j)}:{port}"' for j in range(1, REPLICAS + 1) if j != i)
    hap = s.haproxy[i - 1].port
    pg_extra = "".join(features.get(k, "") for k in ("lock_wait", "require_primary"))
    gw_extra = features.get("traffic", "")
    return f"""[defaults]
interval = "1s"
timeout = "900ms"

[system]
enabled = false

[postgres]
url = "postgres://gateway:{stack.GATEWAY_PASSWORD}@127.0.0.1:{s.proxy.port}/gateway"
long_query = "2s"
{pg_extra}
[gateway]
health_url = "http://127.0.0.1:{hap}/healthz"
metrics_url = "http://127.0.0.1:{s.app.port}/metrics"
pool_metrics = "generic"
window = "30s"
{gw_extra}
[jwt]
algorithm = "HS256"
secret_file = "{s.secret.path}"
issuer = "{stack.JWT_ISSUER}"
audience = "{stack.JWT_AUDIENCE}"
validate_url = "http://127.0.0.1:{hap}/api/validate"

[[upstream]]
name = "orders"
url = "{s.upstreams.url('orders')}"
interval = "2s"
timeout = "1900ms"
latency_warn = "1s"
latency_fail = "3s"
window = "30s"

[[upstream]]
name = "payments"
url = "{s.upstreams.url('payments')}"

{s.kube.section(i)}
{features.get("sockets", "")}
[fleet]
peers = [{peers}]
"""


# Optional configuration the binary may not know yet: name -> block. Each is probed with
# `vigil validate`; refused ones are left out (and the causes that need them score no).
OPTIONAL = {
    "lock_wait": 'lock_wait = "1s"\nidle_in_transaction_warn = "5s"\n',
    "require_primary": "require_primary = true\n",
    "traffic": 'traffic_metrics = "generic"\ngroup_by = "route"\nunauthorized_ratio_warn = 0.10\n',
    "sockets": "[sockets]\nclose_wait_warn = 5\n",
}


def validate(s, port, name, features):
    """``vigil validate`` of replica 1's configuration with ``features``: None, or the refusal."""
    text = vigil_config(s, 1, port, features)
    path = os.path.join(s.out, f"probe-{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'listen = "127.0.0.2:{port}"\n{text}')
    out = subprocess.run([VIGIL_BIN, "validate", "--config", path], env=vigil_env(), capture_output=True,
                         text=True, timeout=60, check=False)
    if out.returncode == 0:
        return None
    return out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"


def probe_features(s, port):
    """The optional blocks this binary accepts: ``{name: block}``, and what it said of the rest."""
    base = validate(s, port, "base", {})
    if base is not None:
        raise RuntimeError(f"the game day's own configuration is refused: {base}")
    accepted, refused = {}, {}
    for name, block in OPTIONAL.items():
        why = validate(s, port, name, {name: block})
        if why is None:
            accepted[name] = block
        else:
            refused[name] = why
    return accepted, refused


def fleet_view(s):
    """``vigil fleet --output json`` run against replica 1, summarized on one line."""
    try:
        out = subprocess.run([VIGIL_BIN, "fleet", "--config", s.replicas[0].config, "--output", "json"],
                             env=vigil_env(), capture_output=True, text=True, timeout=30, check=False)
        doc = json.loads(out.stdout)
    except (ValueError, OSError, subprocess.TimeoutExpired) as e:
        return f"n/a ({e.__class__.__name__})"
    summary = doc["summary"]
    parts = [f"{summary['ready']}/{summary['replicas']} ready"]
    for r in doc["replicas"]:
        host = r["address"].rsplit(":", 1)[0]
        if not r.get("answered"):
            parts.append(f"{host} ?")
            continue
        bad = [f"{c['name']} {'-' if c['status'] == 'fail' else 'warn'}" for c in r["checks"]
               if c["status"] != "pass"]
        if bad or not r.get("ready"):
            parts.append(f"{host}{'' if r.get('ready') else ' NOT READY'}: {', '.join(bad)}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- the stack

class GameDay:
    def __init__(self, out):
        self.out = out
        self.closers = []
        self.load_stop = threading.Event()
        self.extra_stop = threading.Event()
        self.threads = []

    def later(self, closer):
        self.closers.append(closer)

    def start(self):
        log("PostgreSQL (primary)")
        self.pg = stack.PgCluster(max_connections=MAX_CONNECTIONS,
                                  settings={"wal_level": "replica", "max_wal_senders": "4"})
        self.later(self.pg.close)
        self.pg.start()
        with open(os.path.join(self.pg.data, "pg_hba.conf"), "w", encoding="ascii") as f:
            f.write("local all all trust\nlocal replication all trust\n"
                    "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
        self.pg.psql("SELECT pg_reload_conf()")
        self.pg.psql("CREATE TABLE gameday_items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0); "
                     "INSERT INTO gameday_items VALUES (1, 0); GRANT ALL ON gameday_items TO PUBLIC", db="gateway")
        self.proxy = TcpProxy(self.pg.port)
        self.later(self.proxy.close)
        self.upstreams = Upstreams()
        self.later(self.upstreams.close)
        self.secret = stack.JwtSecret()
        self.later(self.secret.close)
        self.app = Application(self.secret, self.proxy.port)
        self.later(self.app.close)
        log("HAProxy x3")
        self.haproxy = [Haproxy(self.out, i, self.app.port, self.upstreams.port) for i in range(1, REPLICAS + 1)]
        for h in self.haproxy:
            self.later(h.stop)
            h.start()
        log("fake Kubernetes API")
        self.kube = FakeKube(self.out)
        self.later(self.kube.close)
        self.restarts = [0] * (REPLICAS + 1)
        for i in range(1, REPLICAS + 1):
            self.kube.post("/pod", pod(i))
            self.kube.post("/metrics", pod_metrics(i))
        self.port = port_free_on_replicas()
        self.features, self.refused = probe_features(self, self.port)
        for name, why in self.refused.items():
            log(f"left out (the binary refuses it): {name}: {why}")
        log("vigil x3")
        self.replicas = [Replica(self.out, i, self.port, vigil_config(self, i, self.port, self.features))
                         for i in range(1, REPLICAS + 1)]
        for r in self.replicas:
            self.later(r.stop)
            r.start()
        stack.wait_until(lambda: all(r.ready() for r in self.replicas), 60, "every replica ready")
        self.traffic()
        return self

    def traffic(self):
        """Valid requests to /api/orders through every HAProxy, about 10 a second in all."""
        def run():
            n = 0
            while not self.load_stop.is_set():
                h = self.haproxy[n % REPLICAS]
                n += 1
                try:
                    stack.http_get(h.port, "/api/orders", timeout=5,
                                   headers={"Authorization": f"Bearer {sign_hs256(self.secret.read())}"})
                except OSError:
                    pass
                self.load_stop.wait(0.1)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def flood(self, path, token_fn, workers, pause_s=0.0):
        """``workers`` threads requesting ``path`` until ``self.extra_stop``; returns a stopper."""
        stop = threading.Event()

        def run(k):
            while not stop.is_set():
                h = self.haproxy[k % REPLICAS]
                try:
                    stack.http_get(h.port, path, timeout=15, headers={"Authorization": f"Bearer {token_fn()}"})
                except OSError:
                    pass
                if pause_s:
                    stop.wait(pause_s)
        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(workers)]
        for t in threads:
            t.start()

        def stopper():
            stop.set()
            for t in threads:
                t.join(timeout=20)
        return stopper

    def close(self):
        self.load_stop.set()
        while self.closers:
            try:
                self.closers.pop()()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: {e}", file=sys.stderr)


# ----------------------------------------------------------------------------- causes

def cause_db_killed(s):
    s.pg.kill9()
    return lambda: s.pg.start()


def cause_lock_pileup(s):
    holder = PgConn(s.proxy.port, "batch-import")
    holder.query("BEGIN")
    holder.query("UPDATE gameday_items SET n = n + 1 WHERE id = 1")
    waiters = [PgConn(s.proxy.port, "checkout") for _ in range(3)]

    def wait(conn):
        try:
            conn.query("UPDATE gameday_items SET n = n + 1 WHERE id = 1")
        except (OSError, PgError):
            pass
    threads = [threading.Thread(target=wait, args=(c,), daemon=True) for c in waiters]
    for t in threads:
        t.start()

    def undo():
        holder.query("ROLLBACK")
        for t in threads:
            t.join(timeout=10)
        for c in [holder, *waiters]:
            c.close()
    return undo


def cause_conns_taken(s):
    taken = []
    for _ in range(MAX_CONNECTIONS):
        try:
            taken.append(PgConn(s.proxy.port, "report-runner", timeout=30))
        except (OSError, PgError):
            break

    def undo():
        for c in taken:
            c.close()
    return undo


def cause_pool_exhausted(s):
    return s.flood("/api/report", lambda: sign_hs256(s.secret.read()), workers=3 * POOL_SIZE)


def cause_upstream_slow(s):
    s.upstreams.modes["orders"] = "slow"
    return lambda: s.upstreams.modes.__setitem__("orders", "ok")


def cause_upstream_503(s):
    s.upstreams.modes["payments"] = "503"
    return lambda: s.upstreams.modes.__setitem__("payments", "ok")


def cause_jwt_rotated(s):
    s.secret.rotate()
    return s.app.restart_with_current_secret


def cause_401_surge(s):
    bad = sign_hs256(b"not-the-gateway-secret-0123456789abcdef")
    return s.flood("/api/orders", lambda: bad, workers=4, pause_s=0.02)


def cause_gateway_oom(s):
    h = s.haproxy[0]
    h.kill9()
    s.restarts[1] += 1
    oom_at = time.time()
    time.sleep(1.0)  # the kubelet restarts the container
    h.start()
    s.kube.post("/pod", pod(1, restarts=s.restarts[1], oom_at=oom_at))
    return lambda: None


def cause_standby(s):
    standby = stack.PgCluster(max_connections=MAX_CONNECTIONS,
                              settings={"wal_level": "replica", "max_wal_senders": "4", "hot_standby": "on"})
    standby._chown(standby.root)  # noqa: SLF001 - the bench's own helper
    os.makedirs(standby.sock, exist_ok=True)
    standby._chown(standby.sock)  # noqa: SLF001
    out = standby._pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(s.pg.port), "-U", "postgres",  # noqa: SLF001
                      "-D", standby.data, "-R", "-X", "stream", timeout=120)
    if out.returncode != 0:
        standby.close()
        raise RuntimeError(f"pg_basebackup failed: {out.stderr}")
    standby._initialized = True  # noqa: SLF001
    standby.start()
    s.proxy.switch(standby.port)

    def undo():
        s.proxy.switch(s.pg.port)
        standby.close()
    return undo


def cause_one_replica(s):
    s.haproxy[2].admin("disable server app/app")
    return lambda: s.haproxy[2].admin("enable server app/app")


def cause_close_wait(s):
    leaky = [PgConn(s.proxy.port, "leaky-worker", timeout=30) for _ in range(20)]
    su = PgConn(s.pg.port, "gameday", user="postgres", db="postgres", timeout=30)
    su.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leaky-worker'")
    su.close()

    def undo():
        for c in leaky:
            c.sock.close()
    return undo


def has(*words):
    return lambda line: all(w.lower() in line.lower() for w in words)


def any_of(*preds):
    return lambda line: any(p(line) for p in preds)


# name, what, target replica (1-based), inject, named(line), the feature it needs (or None)
CAUSES = [
    ("db-killed", "the database killed", 1, cause_db_killed,
     any_of(has("postgres", "refused"), has("postgres", "closed"), has("postgres", "reset"),
            has("postgres", "terminat"), has("postgres", "shut")), None),
    ("lock-pileup", "a lock pile-up behind an idle transaction", 1, cause_lock_pileup,
     any_of(has("blocked", "batch-import"), has("blocked", "idle in transaction")), "lock_wait"),
    ("conns-taken", "the database's connections taken by another application", 1, cause_conns_taken,
     has("report-runner"), None),
    ("pool-exhausted", "the gateway's pool exhausted", 1, cause_pool_exhausted,
     any_of(has("DB pool"), has("pool", "full"), has("pool", "exhaust")), None),
    ("upstream-slow", "an upstream slow past its p95 limit", 1, cause_upstream_slow,
     has("upstream:orders", "p95"), None),
    ("upstream-503", "an upstream answering 503 with a body", 1, cause_upstream_503,
     has("upstream:payments", "no healthy upstream"), None),
    ("jwt-rotated", "the JWT secret rotated, the gateway keeps the old one", 1, cause_jwt_rotated,
     has("old secret"), None),
    ("401-surge", "a surge of 401s on one route", 1, cause_401_surge,
     has("401", "/api/orders"), "traffic"),
    ("standby", "a failover to a standby under require_primary", 1, cause_standby,
     any_of(has("standby"), has("in recovery")), "require_primary"),
    ("one-replica", "one replica's own dependency failing, the others passing", 3, cause_one_replica,
     has("gateway", "503"), None),
    ("close-wait", "a CLOSE_WAIT leak towards the database", 1, cause_close_wait,
     any_of(has("close_wait"), has("close-wait")), "sockets"),
    ("gateway-oom", "the gateway container OOM-killed", 1, cause_gateway_oom,
     has("OOMKilled"), None),
]


def run_cause(s, cause):
    name, what, target, inject, named, needs = cause
    replica = s.replicas[target - 1]
    log(f"{name}: {what}")
    t0 = time.monotonic()
    undo = inject(s)
    found, at, fleet, last_head = None, None, None, []
    deadline = t0 + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            head = replica.head()
            hit = next((ln for ln in head if named(ln)), None)
            if hit is not None:
                found, at = hit.strip(), time.monotonic() - t0
                break
            time.sleep(POLL_S)
        # What `vigil fleet` shows once hysteresis has had its say (two runs at 1 s).
        time.sleep(max(0.0, t0 + 3.0 - time.monotonic()))
        fleet = fleet_view(s)
        last_head = replica.head()
        with open(os.path.join(s.out, f"{name}.head.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(last_head) + "\n")
    finally:
        undo()
    note = ""
    if found is None:
        said = next((ln.strip() for ln in last_head if "[FAIL]" in ln or "[WARN]" in ln), None)
        said = said or next((ln.strip() for ln in last_head if ln.startswith("verdict: ")), "")
        note = f"(it said: {said})" if said else ""
        if needs and needs in s.refused:
            key = s.refused[needs].removeprefix("vigil: ").split(": unknown key", 1)[0]
            note = f"(not measurable yet: this binary refuses `{key}`) {note}"
    result = {"cause": name, "what": what, "replica": replica.host, "named": found is not None,
              "seconds": None if at is None else round(at, 1), "line": found, "fleet": fleet, "note": note}
    log(f"  -> {'named' if found else 'not named'}"
        f"{f' after {at:.1f}s: {found}' if found else ''}; fleet: {fleet}")
    settle(s, name)
    return result


def settle(s, name):
    """Every replica ready again, and the target's first lines free of failures."""
    try:
        stack.wait_until(lambda: all(r.ready() for r in s.replicas), 90, f"every replica ready after {name}")
    except TimeoutError:
        log(f"  (not every replica ready 90 s after repairing {name}; going on)")
    time.sleep(2)


def table(results, refused):
    rows = ["| cause | named in the first 10 lines of /diag | seconds | the line that named it | `vigil fleet` |",
            "| --- | --- | --- | --- | --- |"]
    for r in results:
        line = (r["line"] or r["note"] or "").replace("|", "\\|")
        if len(line) > 200:
            line = line[:199] + "…"
        rows.append(f"| {r['what']} | {'yes' if r['named'] else 'no'} | "
                    f"{'' if r['seconds'] is None else r['seconds']} | {line} | {r['fleet'].replace('|', '/')} |")
    named = sum(r["named"] for r in results)
    rows.append("")
    rows.append(f"Score: {named} of {len(results)} causes named.")
    if refused:
        rows.append("Configuration this binary refused (left out): " +
                    "; ".join(f"`{k}`" for k in refused) + ".")
    return "\n".join(rows)


def main():
    if not os.access(VIGIL_BIN, os.X_OK):
        sys.exit(f"{VIGIL_BIN} is missing: cargo build --release --locked --bin vigil (or set VIGIL_BIN)")
    for tool in ("haproxy", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: bash .ci/deps.sh")
    wanted = [c for c in os.environ.get("CAUSES", "").split(",") if c]
    unknown = set(wanted) - {c[0] for c in CAUSES}
    if unknown:
        sys.exit(f"unknown causes: {sorted(unknown)}; known: {[c[0] for c in CAUSES]}")
    causes = [c for c in CAUSES if not wanted or c[0] in wanted]
    stack.install_signal_handlers()
    out = stack.out_dir("gameday")
    log(f"raw output in {out}; vigil {VIGIL_BIN}")
    s = GameDay(out)
    results = []
    try:
        s.start()
        for cause in causes:
            results.append(run_cause(s, cause))
    finally:
        s.close()
    text = table(results, s.refused if hasattr(s, "refused") else {})
    print()
    print(text)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"results": results, "refused": getattr(s, "refused", {}), "deadline_s": DEADLINE_S,
                   "binary": VIGIL_BIN}, f, indent=2)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
