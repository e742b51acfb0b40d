#!/usr/bin/env python3
"""The shared bench environment: everything vigil probes, on 127.0.0.1 only, stopped on exit.

Python 3 standard library only. Import it from another bench script
(``sys.path.insert(0, "bench"); import stack``) or run ``python3 bench/stack.py selftest``.

What it provides (see each class):

- ``free_port()``, ``wait_until(pred, timeout_s, what)``, ``ProcStats`` (from /proc);
- ``PgCluster``: initdb + pg_ctl in a temporary directory, a free port on 127.0.0.1, run as the
  ``postgres`` user through ``setpriv`` when we are root (PostgreSQL refuses to run as root);
  a role ``gateway`` with a password owning a database ``gateway``;
- ``Upstreams``: N HTTP endpoints ``/u<i>`` served by one threaded server, each switchable to
  ``ok`` (200), ``500`` or ``hang`` (accept, read the request, never answer);
- ``FakeGateway``: ``/healthz``, ``/metrics`` (pool gauges, request counter, latency histogram)
  and ``/api/validate``, which verifies HS256 bearer tokens with the secret it loaded at ITS
  start, like a gateway that does not reload its secret;
- ``JwtSecret``: a kubelet-style secret mount (``secret -> ..data/secret``, ``..data`` swapped
  atomically on rotation);
- ``Vigil``: writes a config, runs ``target/release/vigil`` with a cleared environment;
- ``full_config(stack, interval)`` and ``Stack``, a context manager building all of it.

Every wait is bounded; every process started is stopped by ``close()``/``__exit__``, also on
Ctrl-C (and on SIGTERM once ``install_signal_handlers()`` has been called).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIGIL_BIN = os.path.join(REPO, "target", "release", "vigil")
HELLO_BIN = os.path.join(REPO, "target", "release", "examples", "hello_hyper")
CLK_TCK = os.sysconf("SC_CLK_TCK")
GATEWAY_PASSWORD = "bench-gateway-pw"
SUPERUSER_PASSWORD = "bench-superuser-pw"
JWT_ISSUER = "api-gateway"
JWT_AUDIENCE = "api"


# ----------------------------------------------------------------------------- helpers

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout_s, what, interval_s=0.02):
    """Polls ``pred()`` every ``interval_s`` until it is true; raises TimeoutError(what) after
    ``timeout_s`` seconds. Exceptions from ``pred`` count as false."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - a poll: not ready yet
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(what)
        time.sleep(interval_s)


def out_dir(script):
    """``target/bench/<script>-<UTC timestamp>/``, created."""
    path = os.path.join(REPO, "target", "bench", f"{script}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.makedirs(path, exist_ok=True)
    return path


def loadavg():
    """The first three fields of /proc/loadavg, as a string."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def median(values):
    """The median (mean of the two middle values for an even count); nan when empty."""
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def http_get(url_or_port, path="/", timeout=5.0, headers=None):
    """GET ``http://127.0.0.1:<port><path>`` (or a full http:// URL): ``(status, body_bytes)``.
    Raises OSError when there is no answer."""
    if isinstance(url_or_port, int):
        host, port = "127.0.0.1", url_or_port
    else:
        rest = url_or_port.split("://", 1)[1]
        hostport, _, tail = rest.partition("/")
        host, _, p = hostport.rpartition(":")
        port = int(p)
        path = "/" + tail
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_build(binaries=(VIGIL_BIN,)):
    """Exits with the build command when a binary is missing; warns when one is older than a
    file under src/ or Cargo.lock (the scripts do not build: run
    ``cargo build --release --locked --bin vigil --example hello_hyper`` first)."""
    newest = 0.0
    for root, _dirs, files in os.walk(os.path.join(REPO, "src")):
        for name in files:
            newest = max(newest, os.path.getmtime(os.path.join(root, name)))
    newest = max(newest, os.path.getmtime(os.path.join(REPO, "Cargo.lock")))
    for binary in binaries:
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is missing: cargo build --release --locked --bin vigil --example hello_hyper")
        if os.path.getmtime(binary) < newest:
            print(f"WARNING: {os.path.relpath(binary, REPO)} is older than src/: rebuild with "
                  "cargo build --release --locked --bin vigil --example hello_hyper", file=sys.stderr)


def install_signal_handlers():
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so that ``with Stack()`` cleans up on them
    as it does on Ctrl-C."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def clean_env(extra=None):
    """A minimal environment: no VIGIL_*, DATABASE_URL, RUST_LOG or PG* of the caller."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def stop_process(proc, term_timeout_s=10.0, sig=signal.SIGTERM):
    """Signals a Popen, waits up to ``term_timeout_s``, then SIGKILLs it. Never raises."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=term_timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    except OSError:
        pass


def pid_alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid):
    """Direct children of ``pid`` (from /proc/*/stat)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


# ----------------------------------------------------------------------------- /proc

class ProcStats:
    """Figures of one process from /proc/PID (all threads)."""

    @staticmethod
    def cpu_ticks(pid):
        """utime + stime in clock ticks."""
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    @staticmethod
    def cpu_seconds(pid):
        """utime + stime in seconds (resolution: one clock tick, usually 10 ms)."""
        return ProcStats.cpu_ticks(pid) / CLK_TCK

    @staticmethod
    def sched_ns(pid):
        """On-CPU time in ns summed over the live threads' schedstat (finer than ticks; misses
        threads that already exited)."""
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total

    @staticmethod
    def _status(pid, key):
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    @staticmethod
    def rss_kib(pid):
        return ProcStats._status(pid, "VmRSS")

    @staticmethod
    def hwm_kib(pid):
        return ProcStats._status(pid, "VmHWM")

    @staticmethod
    def anon_kib(pid):
        return ProcStats._status(pid, "RssAnon")

    @staticmethod
    def fd_count(pid):
        return len(os.listdir(f"/proc/{pid}/fd"))

    @staticmethod
    def thread_count(pid):
        return ProcStats._status(pid, "Threads")


# ----------------------------------------------------------------------------- PostgreSQL

def _pg_bin_dir():
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    base = "/usr/lib/postgresql"
    versions = sorted((d for d in os.listdir(base) if os.path.exists(f"{base}/{d}/bin/initdb")),
                      key=lambda d: [int(x) for x in d.split(".") if x.isdigit()]) if os.path.isdir(base) else []
    if not versions:
        raise RuntimeError("initdb not found: apt-get install postgresql")
    return f"{base}/{versions[-1]}/bin"


class PgCluster:
    """An ephemeral PostgreSQL cluster on 127.0.0.1.

    ``PgCluster(max_connections=100, settings={"name": "value"})``; ``.start()`` runs initdb (the
    first time) and ``pg_ctl start -w``. ``.url`` is the TCP URL of role ``gateway`` (password
    ``GATEWAY_PASSWORD``, member of ``pg_monitor``) on its own database ``gateway``;
    ``.superuser_url`` the superuser's. ``.psql(sql)`` runs SQL as the superuser over the unix
    socket. ``.stop()`` is ``pg_ctl stop -m fast``; ``.kill9()`` SIGKILLs the postmaster and waits
    until it and its backends are gone; ``.restart()`` stops if running and starts again on the
    same port. ``.close()`` stops everything and removes the directory.
    """

    def __init__(self, max_connections=100, settings=None, pg_monitor=True):
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.pg_monitor = pg_monitor
        self.bin = _pg_bin_dir()
        self.as_postgres = os.geteuid() == 0
        self.root = tempfile.mkdtemp(prefix="vigil-bench-pg-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.log_path = os.path.join(self.root, "postgres.log")
        self.port = free_port()
        self._initialized = False
        self.user, self.password, self.dbname = "gateway", GATEWAY_PASSWORD, "gateway"

    # --- commands
    def _pg(self, program, *args, timeout=60):
        cmd = [os.path.join(self.bin, program), *args]
        if self.as_postgres:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd]
        return subprocess.run(cmd, cwd=self.root, env=clean_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def _chown(self, path):
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def psql(self, sql, db="postgres", timeout=60):
        """Runs ``sql`` as the superuser over the unix socket; the unaligned, tuples-only output,
        stripped. Raises RuntimeError with psql's stderr on failure."""
        cmd = [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", db]
        out = subprocess.run(cmd, input=sql + "\n", cwd=self.root, env=clean_env(), capture_output=True,
                             text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed for {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    # --- lifecycle
    def _init(self):
        pwfile = os.path.join(self.root, "pwfile")
        with open(pwfile, "w", encoding="ascii") as f:
            f.write(SUPERUSER_PASSWORD + "\n")
        os.makedirs(self.sock, exist_ok=True)
        for p in (self.root, pwfile, self.sock):
            self._chown(p)
        out = self._pg("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                       "--no-locale", "--no-sync", f"--pwfile={pwfile}", timeout=120)
        os.remove(pwfile)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba, "w", encoding="ascii") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        with open(os.path.join(self.data, "postgresql.conf"), "a", encoding="ascii") as f:
            f.write("\ninclude = 'bench.conf'\n")
        self._initialized = True

    def _write_settings(self):
        conf = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sock}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": "16MB",
            "fsync": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "autovacuum": "off",
            "logging_collector": "off",
            "password_encryption": "'scram-sha-256'",
        }
        conf.update(self.settings)
        path = os.path.join(self.data, "bench.conf")
        with open(path, "w", encoding="ascii") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        self._chown(path)

    def pid(self):
        """The postmaster's pid from postmaster.pid, or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def is_running(self):
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def accepts(self):
        """Something accepts TCP connections on the port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _remove_stale_pid(self):
        pid = self.pid()
        if pid is not None and not pid_alive(pid):
            for p in (os.path.join(self.data, "postmaster.pid"),
                      os.path.join(self.sock, f".s.PGSQL.{self.port}.lock"),
                      os.path.join(self.sock, f".s.PGSQL.{self.port}")):
                try:
                    os.remove(p)
                except OSError:
                    pass

    def start(self):
        """initdb on first use, then ``pg_ctl start -w`` (a new free port if the first start
        finds the port taken). Creates role and database ``gateway`` on first start."""
        first = not self._initialized
        if first:
            self._init()
        for attempt in range(3):
            self._write_settings()
            self._remove_stale_pid()
            before = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            out = self._pg("pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "30", "start", timeout=45)
            if out.returncode == 0:
                break
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(before)
                log = f.read()
            self._kill_all()
            if ("could not bind" in log or "already in use" in log) and attempt < 2:
                if first:
                    self.port = free_port()
                else:
                    time.sleep(0.3)
                continue
            raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}\n{log}")
        else:
            raise RuntimeError("pg_ctl start: port conflicts three times")
        if first:
            self.psql(f"CREATE ROLE gateway LOGIN PASSWORD '{GATEWAY_PASSWORD}'")
            self.psql("CREATE DATABASE gateway OWNER gateway")
            if self.pg_monitor:
                self.psql("GRANT pg_monitor TO gateway")
        return self

    def stop(self, mode="fast"):
        """``pg_ctl stop -m <mode>`` (fast by default)."""
        if not self.is_running():
            return
        out = self._pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop", timeout=45)
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {out.stdout}{out.stderr}")

    def kill9(self, timeout_s=15):
        """SIGKILL of the postmaster (a crash); waits until the port refuses and the postmaster and
        its orphaned backends have exited. Returns the kill time (time.monotonic())."""
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            raise RuntimeError("kill9: no running postmaster")
        kids = children_of(pid)
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.accepts(), timeout_s, "the killed postmaster's port to refuse")
        wait_until(lambda: not pid_alive(pid) and not any(pid_alive(k) for k in kids), timeout_s,
                   "the killed postmaster and its backends to exit")
        self._remove_stale_pid()
        return t

    def restart(self):
        """Stops (fast) if running, then starts again on the same port."""
        self.stop()
        self.start()

    def _kill_all(self):
        pid = self.pid()
        if pid is not None and pid_alive(pid):
            pids = [pid, *children_of(pid)]
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            try:
                wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "postgres processes to exit")
            except TimeoutError:
                pass

    def close(self):
        """Stops the server (immediate), kills stragglers, removes the directory. Never raises."""
        try:
            if self.is_running():
                self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "10", "stop", timeout=15)
        except Exception:  # noqa: BLE001 - cleanup
            pass
        self._kill_all()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- addresses
    def dsn(self, user, password, db):
        return f"postgres://{user}:{password}@127.0.0.1:{self.port}/{db}"

    @property
    def url(self):
        """The role ``gateway`` on database ``gateway`` over TCP."""
        return self.dsn(self.user, self.password, self.dbname)

    @property
    def superuser_url(self):
        return self.dsn("postgres", SUPERUSER_PASSWORD, "postgres")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- HTTP servers

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that gave up (vigil cutting a run at its timeout) is not an error here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.owner.handle(self)

    do_HEAD = do_GET  # noqa: N815

    def reply(self, status, body=b"", content_type="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HttpBase:
    """One ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self):
        self.stopping = threading.Event()
        self.requests = 0
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def handle(self, req):
        with self._lock:
            self.requests += 1
        self.route(req)

    def route(self, req):
        req.reply(404, "not found\n")

    def hang(self, req, still_hanging, max_s=600):
        """Holds the connection without answering until ``still_hanging()`` is false, the server
        stops, or ``max_s`` passes; then closes it without an answer."""
        deadline = time.monotonic() + max_s
        while still_hanging() and not self.stopping.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        req.close_connection = True

    def close(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Upstreams(_HttpBase):
    """N endpoints ``/u0`` … ``/u<N-1>`` on one server. ``.url(i)``; ``.set_mode(i, mode)`` with
    mode ``ok`` (200 ``ok``), ``500`` or ``hang`` (accept, never answer; the connection is closed
    when the mode changes back)."""

    MODES = ("ok", "hang", "500")

    def __init__(self, n=5):
        self.n = n
        self.modes = ["ok"] * n
        super().__init__()

    def url(self, i):
        return f"{self.base()}/u{i}"

    def set_mode(self, i, mode):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.modes[i] = mode

    def route(self, req):
        path = req.path.split("?", 1)[0]
        if not path.startswith("/u") or not path[2:].isdigit() or int(path[2:]) >= self.n:
            req.reply(404, "no such upstream\n")
            return
        i = int(path[2:])
        mode = self.modes[i]
        if mode == "hang":
            self.hang(req, lambda: self.modes[i] == "hang")
        elif mode == "500":
            req.reply(500, "internal error\n")
        else:
            req.reply(200, "ok\n")


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_hs256(token, key, issuer=JWT_ISSUER, audience=JWT_AUDIENCE):
    """Verifies an HS256 JWT like a strict gateway: ``None`` when valid, else the reason."""
    parts = token.split(".")
    if len(parts) != 3:
        return "not three parts"
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except ValueError:
        return "not base64url JSON"
    if header.get("alg") != "HS256":
        return f"alg {header.get('alg')}"
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return "bad signature"
    now = time.time()
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= now:
        return "expired"
    if claims.get("iss") != issuer or claims.get("aud") != audience:
        return "iss/aud"
    return None


class FakeGateway(_HttpBase):
    """A gateway: ``/healthz`` (200 unless ``set_health``), ``/metrics`` (Prometheus text:
    ``connection_pool_in_use``/``_max``/``_waiting``, ``http_requests_total{status}``,
    ``http_request_duration_seconds`` histogram; the counters grow with time like live traffic),
    and ``/api/validate``: 200 for an HS256 bearer token valid under the secret loaded at start
    (or at ``restart_with_current_secret()``), 401 otherwise.

    ``secret`` is a ``JwtSecret`` (its current content is loaded) or bytes.
    """

    def __init__(self, secret):
        self.secret_source = secret
        self.key = self._read_secret()
        self.health = 200
        self.pool = (4, 20, 0)  # in_use, max, waiting
        self.started = time.monotonic()
        self.validations = {"accepted": 0, "rejected": 0}
        super().__init__()

    def _read_secret(self):
        src = self.secret_source
        return src.read() if isinstance(src, JwtSecret) else bytes(src)

    def restart_with_current_secret(self):
        """What a rollout restart does: the gateway loads the secret mounted now."""
        self.key = self._read_secret()

    def set_health(self, status):
        self.health = status

    def set_pool(self, in_use, max_, waiting=0):
        self.pool = (in_use, max_, waiting)

    @property
    def health_url(self):
        return f"{self.base()}/healthz"

    @property
    def metrics_url(self):
        return f"{self.base()}/metrics"

    @property
    def validate_url(self):
        return f"{self.base()}/api/validate"

    def metrics_text(self):
        # 100 requests a second, 0.5 % of them 5xx, latencies spread over the buckets.
        t = time.monotonic() - self.started
        total = int(t * 100)
        e5 = total // 200
        e4 = total // 100
        ok = total - e5 - e4
        in_use, max_, waiting = self.pool
        lines = [
            "# HELP connection_pool_in_use Connections in use.",
            "# TYPE connection_pool_in_use gauge",
            f"connection_pool_in_use {in_use}",
            "# HELP connection_pool_max Pool size.",
            "# TYPE connection_pool_max gauge",
            f"connection_pool_max {max_}",
            "# HELP connection_pool_waiting Requests waiting for a connection.",
            "# TYPE connection_pool_waiting gauge",
            f"connection_pool_waiting {waiting}",
            "# HELP http_requests_total Requests served.",
            "# TYPE http_requests_total counter",
            f'http_requests_total{{status="200"}} {ok}',
            f'http_requests_total{{status="401"}} {e4}',
            f'http_requests_total{{status="503"}} {e5}',
            "# HELP http_request_duration_seconds Request latency.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        shares = [("0.005", 0.2), ("0.01", 0.45), ("0.025", 0.7), ("0.05", 0.85), ("0.1", 0.93),
                  ("0.25", 0.97), ("0.5", 0.99), ("1", 0.995), ("2.5", 0.999), ("5", 1.0)]
        for le, share in shares:
            lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {int(total * share)}')
        lines += [
            f'http_request_duration_seconds_bucket{{le="+Inf"}} {total}',
            f"http_request_duration_seconds_sum {total * 0.03:.3f}",
            f"http_request_duration_seconds_count {total}",
        ]
        return "\n".join(lines) + "\n"

    def route(self, req):
        path = req.path.split("?", 1)[0]
        if path == "/healthz":
            req.reply(self.health, "ok\n" if self.health == 200 else "unhealthy\n")
        elif path == "/metrics":
            req.reply(200, self.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/api/validate":
            auth = req.headers.get("Authorization", "")
            reason = verify_hs256(auth[7:].strip(), self.key) if auth.lower().startswith("bearer ") \
                else "no bearer token"
            self.validations["accepted" if reason is None else "rejected"] += 1
            if reason is None:
                req.reply(200, '{"valid":true}\n', "application/json")
            else:
                req.reply(401, '{"error":"invalid token"}\n', "application/json")
        else:
            req.reply(404, "not found\n")


# ----------------------------------------------------------------------------- JWT secret

class JwtSecret:
    """A Kubernetes Secret volume: ``<dir>/secret -> ..data/secret``, ``..data -> ..<stamp>``;
    ``rotate()`` writes a new random 48-byte secret (URL-safe text, no newline) into a new
    directory and renames a new ``..data`` link over the old one (atomic for readers), as the
    kubelet does. ``.path`` is the file vigil reads."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vigil-bench-secret-")
        self.version = 0
        self.rotations = 0
        first = self._write_version(self._new_secret())
        os.symlink(first, os.path.join(self.dir, "..data"))
        os.symlink("..data/secret", os.path.join(self.dir, "secret"))

    @staticmethod
    def _new_secret():
        return secrets.token_urlsafe(36).encode()  # 48 characters

    def _write_version(self, content):
        name = f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{self.version:09d}"
        self.version += 1
        os.mkdir(os.path.join(self.dir, name))
        with open(os.path.join(self.dir, name, "secret"), "wb") as f:
            f.write(content)
        self.current = content
        return name

    @property
    def path(self):
        return os.path.join(self.dir, "secret")

    def read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def rotate(self):
        """Swaps in a new random secret; returns ``time.monotonic()`` of the swap."""
        data = os.path.join(self.dir, "..data")
        old = os.readlink(data)
        new = self._write_version(self._new_secret())
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(new, tmp)
        os.rename(tmp, data)
        t = time.monotonic()
        shutil.rmtree(os.path.join(self.dir, old), ignore_errors=True)
        self.rotations += 1
        return t

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- vigil

class Vigil:
    """``Vigil(out_dir, config_toml, name="vigil", env=None)``: writes
    ``<out_dir>/<name>.toml`` with ``listen = "127.0.0.1:<free port>"`` prepended and runs
    ``target/release/vigil run --config`` it with a cleared environment (plus
    ``VIGIL_LOG_FORMAT=json``, ``RUST_LOG=info`` and ``env``), logs in ``<out_dir>/<name>.log``.
    ``.start()`` waits for ``/livez`` (``.spawned_at`` is the monotonic time of the exec);
    ``.stop()`` SIGTERM then SIGKILL; ``.get(path) -> (status, body str)``;
    ``.wait_ready(timeout)`` waits for ``/readyz`` 200."""

    def __init__(self, out_dir, config_toml, name="vigil", env=None, binary=VIGIL_BIN):
        self.out_dir = out_dir
        self.config_toml = config_toml
        self.name = name
        self.env = dict(env or {})
        self.binary = binary
        self.proc = None
        self.port = None
        self.spawned_at = None
        self.config_path = os.path.join(out_dir, f"{name}.toml")
        self.log_path = os.path.join(out_dir, f"{name}.log")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def spawn(self):
        """Writes the config and execs vigil without waiting."""
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"{self.binary} missing: cargo build --release --locked --bin vigil")
        self.port = free_port()
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\n{self.config_toml}')
        env = clean_env({"VIGIL_LOG_FORMAT": "json", "RUST_LOG": "info", **self.env})
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.spawned_at = time.monotonic()
            self.proc = subprocess.Popen([self.binary, "run", "--config", self.config_path], env=env,
                                         cwd=self.out_dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()
        return self

    def start(self, timeout_s=30):
        """Spawns and waits for ``/livez`` to answer (any status); retries on a port clash."""
        for attempt in range(3):
            self.spawn()
            try:
                wait_until(lambda: self.proc.poll() is not None or self.get("/livez", timeout=1)[0] > 0,
                           timeout_s, f"vigil /livez on port {self.port}")
            except BaseException:
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            if "in use" not in self.logs() or attempt == 2:
                raise RuntimeError(f"vigil exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        return self

    def get(self, path, timeout=5.0):
        """``(status, body)``; raises OSError without an answer."""
        status, body = http_get(self.port, path, timeout=timeout)
        return status, body.decode("utf-8", errors="replace")

    def diag(self):
        """``/diag?format=json`` parsed."""
        return json.loads(self.get("/diag?format=json")[1])

    def metrics(self):
        return self.get("/metrics")[1]

    def wait_ready(self, timeout_s=60):
        """Waits for ``/readyz`` 200."""
        wait_until(lambda: self.get("/readyz", timeout=1)[0] == 200, timeout_s,
                   f"vigil /readyz 200 within {timeout_s}s; last: {self._last_verbose()}")

    def wait_status(self, path, status, timeout_s, poll_s=0.01):
        """Polls ``path`` until it answers ``status``; returns ``time.monotonic()`` then."""
        wait_until(lambda: self.get(path, timeout=1)[0] == status, timeout_s,
                   f"{path} {status} within {timeout_s}s", interval_s=poll_s)
        return time.monotonic()

    def all_checks_pass(self, names=None):
        """Every check in ``/diag`` reports ``pass`` (and, with ``names``, exactly those run)."""
        checks = self.diag()["vigil"]["checks"]
        if names is not None and set(checks) != set(names):
            return False
        return all(c.get("status") == "pass" for c in checks.values())

    def _last_verbose(self):
        try:
            return self.get("/readyz?verbose", timeout=1)[1].strip().replace("\n", " | ")
        except OSError as e:
            return str(e)

    def logs(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout_s=15):
        stop_process(self.proc, timeout_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def env_num(name, default, kind=int):
    """A positive number from the environment variable ``name`` (``default`` when unset); exits
    with a message naming the variable otherwise."""
    raw = os.environ.get(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        sys.exit(f"{name} must be a number, got {raw!r}")
    if value <= 0:
        sys.exit(f"{name} must be positive, got {raw!r}")
    return value


def seconds(duration):
    """``"250ms"``/``"5s"``/``"2m"`` -> seconds."""
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if duration.endswith(suffix) and duration[: -len(suffix)].replace(".", "").isdigit():
            return float(duration[: -len(suffix)]) * factor
    raise ValueError(f"not a duration: {duration!r}")


def check_names(n_upstreams=5, pg=True):
    """The check names ``full_config`` configures."""
    names = ["system", "jwt", "gateway"] + [f"upstream:u{i}" for i in range(n_upstreams)]
    return names + (["postgres"] if pg else [])


def full_config(stack, interval="5s", *, timeout=None, failure_threshold=None, drain="0s", extra=""):
    """postgres + jwt (secret_file, validate_url) + gateway (health_url, metrics_url) + the
    stack's upstreams + system, all at ``interval`` (``[defaults]``). The timeout is 2 s, or the
    interval if shorter, unless given. ``drain`` is ``[shutdown] drain`` (0s: stop at once)."""
    if timeout is None:
        timeout = "2s" if seconds(interval) >= 2 else interval
    lines = ["[defaults]", f'interval = "{interval}"', f'timeout = "{timeout}"']
    if failure_threshold is not None:
        lines.append(f"failure_threshold = {failure_threshold}")
    lines += ["", "[shutdown]", f'drain = "{drain}"', "", "[system]", ""]
    if stack.pg is not None:
        lines += ["[postgres]", f'url = "{stack.pg.url}"', ""]
    lines += ["[jwt]", 'algorithm = "HS256"', f'secret_file = "{stack.secret.path}"',
              f'issuer = "{JWT_ISSUER}"', f'audience = "{JWT_AUDIENCE}"',
              f'validate_url = "{stack.gateway.validate_url}"', ""]
    lines += ["[gateway]", f'health_url = "{stack.gateway.health_url}"',
              f'metrics_url = "{stack.gateway.metrics_url}"', ""]
    for i in range(stack.upstreams.n):
        lines += ["[[upstream]]", f'name = "u{i}"', f'url = "{stack.upstreams.url(i)}"', ""]
    return "\n".join(lines) + "\n" + extra


class Stack:
    """``with Stack(out_dir) as s:`` — a PostgreSQL cluster (``s.pg``; ``pg=False`` for none),
    ``n_upstreams`` upstreams (``s.upstreams``), a JWT secret mount (``s.secret``) and a gateway
    that loaded it (``s.gateway``). ``s.start_vigil(config=None, interval="5s", **kw)`` starts a
    vigil (full_config by default) that the stack stops on exit. Everything is stopped on exit,
    also on an exception or Ctrl-C."""

    def __init__(self, out_dir=None, n_upstreams=5, pg=True, max_connections=100, pg_settings=None):
        self.out_dir = out_dir or globals()["out_dir"]("stack")
        self.n_upstreams = n_upstreams
        self.want_pg = pg
        self.max_connections = max_connections
        self.pg_settings = pg_settings
        self.pg = self.upstreams = self.gateway = self.secret = None
        self.vigils = []
        self._closers = []

    def start(self):
        try:
            self.secret = JwtSecret()
            self._closers.append(self.secret.close)
            self.gateway = FakeGateway(self.secret)
            self._closers.append(self.gateway.close)
            self.upstreams = Upstreams(self.n_upstreams)
            self._closers.append(self.upstreams.close)
            if self.want_pg:
                self.pg = PgCluster(max_connections=self.max_connections, settings=self.pg_settings)
                self._closers.append(self.pg.close)
                self.pg.start()
        except BaseException:
            self.close()
            raise
        return self

    def full_config(self, interval="5s", **kw):
        return full_config(self, interval, **kw)

    def start_vigil(self, config=None, interval="5s", name="vigil", env=None, **kw):
        v = Vigil(self.out_dir, config if config is not None else self.full_config(interval, **kw),
                  name=name, env=env)
        self.vigils.append(v)
        v.start()
        return v

    def close(self):
        for v in self.vigils:
            v.stop()
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: {e}", file=sys.stderr)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- measuring

class CpuWindow:
    """CPU of one process over a window: ``w = CpuWindow(pid)`` … ``w.stop()``; then
    ``.ticks_s`` (utime+stime from /proc/PID/stat: every thread, also those that exited, in
    1/CLK_TCK steps) and ``.sched_s`` (per-thread schedstat deltas, in ns: precise, but misses
    threads that exited during the window), ``.wall_s``, thread counts at both ends."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.monotonic()
        self.ticks0 = ProcStats.cpu_ticks(pid)
        self.sched0 = self._per_thread(pid)
        self.threads0 = len(self.sched0)

    @staticmethod
    def _per_thread(pid):
        out = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    out[tid] = int(f.read().split()[0])
            except OSError:
                pass
        return out

    def stop(self):
        self.wall_s = time.monotonic() - self.t0
        self.ticks_s = (ProcStats.cpu_ticks(self.pid) - self.ticks0) / CLK_TCK
        end = self._per_thread(self.pid)
        self.sched_s = sum(ns - self.sched0.get(tid, 0) for tid, ns in end.items()) / 1e9
        self.threads1 = len(end)
        return self

    @property
    def cpu_s(self):
        """The figure to use: schedstat (precise), unless /proc/PID/stat saw more than one tick
        more (a thread that exited during the window took it)."""
        return self.ticks_s if self.ticks_s > self.sched_s + 1.5 / CLK_TCK else self.sched_s


class RssSampler:
    """Samples VmRSS (KiB) of some pids every ``every_s`` in a thread until ``stop()``; the sum
    over the pids per sample. ``.median_kib``, ``.max_kib``."""

    def __init__(self, pids, every_s=1.0):
        self.pids, self.every_s = list(pids), every_s
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                self.samples.append(sum(ProcStats.rss_kib(p) for p in self.pids))
            except OSError:
                pass
            if self._stop.wait(self.every_s):
                return

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        return self

    @property
    def median_kib(self):
        return median(self.samples)

    @property
    def max_kib(self):
        return max(self.samples) if self.samples else float("nan")


class ScrapeLoop:
    """A Prometheus-like scraper: each URL fetched every ``interval_s`` (start times spread over
    the interval), one kept-alive connection per URL, in one thread per URL, until ``stop()``.
    ``.stats[url]`` = {"ok", "failed", "bytes"}; ``.last[url]`` the last body (bytes)."""

    def __init__(self, urls, interval_s, timeout_s=10.0):
        self.urls, self.interval_s, self.timeout_s = list(urls), interval_s, timeout_s
        self.stats = {u: {"ok": 0, "failed": 0, "bytes": 0} for u in self.urls}
        self.last = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u, interval_s * i / max(1, len(self.urls))),
                                          daemon=True) for i, u in enumerate(self.urls)]
        for t in self._threads:
            t.start()

    def _run(self, url, offset):
        rest = url.split("://", 1)[1]
        hostport, _, tail = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        path = "/" + tail
        conn = None
        if self._stop.wait(offset):
            return
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout_s)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                self.stats[url]["ok" if resp.status == 200 else "failed"] += 1
                self.stats[url]["bytes"] += len(body)
                self.last[url] = body
            except (OSError, http.client.HTTPException):
                self.stats[url]["failed"] += 1
                if conn is not None:
                    conn.close()
                conn = None
            next_at += self.interval_s
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                break
        if conn is not None:
            conn.close()

    def total(self, key="ok"):
        return sum(s[key] for s in self.stats.values())

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 2)
        return self


def hammer(url, n, timeout_s=10.0):
    """GETs ``url`` ``n`` times in a row over one kept-alive connection; returns
    ``(per-request seconds list, last body bytes)``. Raises on a non-200 answer."""
    rest = url.split("://", 1)[1]
    hostport, _, tail = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    times, body = [], b""
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("GET", "/" + tail)
            resp = conn.getresponse()
            body = resp.read()
            times.append(time.perf_counter() - t)
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status}")
    finally:
        conn.close()
    return times, body


def metric_sum(text, name, label_filter=""):
    """Sum of the samples of ``name`` (exact metric name) whose label text contains
    ``label_filter``, in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest[:1] not in ("{", " "):
            continue
        if label_filter and label_filter not in rest:
            continue
        try:
            # The value is the last field ("name 3" has no label text before it).
            total += float(rest.split()[-1])
        except (IndexError, ValueError):
            pass
    return total


class Exporter:
    """A Prometheus exporter process: ``Exporter(out_dir, name, argv, env=None)``; ``.port`` is a
    free port that ``argv`` gets via ``{port}``; ``.start(ready_path, ready_pred)`` waits for
    ``GET ready_path`` to answer 200 with ``ready_pred(body)`` true (records ``.ready_s``, exec to
    that answer); ``.stop()``."""

    def __init__(self, out_dir, name, argv, env=None):
        self.out_dir, self.name = out_dir, name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = clean_env(env)
        self.proc = None
        self.ready_s = None
        self.log_path = os.path.join(out_dir, f"{name}.log")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, ready_path="/metrics", ready_pred=None, timeout_s=30):
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.out_dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

        def ready():
            if self.proc.poll() is not None:
                with open(self.log_path, encoding="utf-8", errors="replace") as f:
                    raise RuntimeError(f"{self.name} exited: {f.read()[-2000:]}")
            status, body = http_get(self.port, ready_path, timeout=2)
            return status == 200 and (ready_pred is None or ready_pred(body))

        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if ready():
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready within {timeout_s}s")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0
        return self

    def stop(self):
        stop_process(self.proc, 10)


def blackbox_exporter(out_dir, timeout="2s"):
    """prometheus-blackbox-exporter with module ``http_2xx`` (GET, 2xx, ip4, ``timeout``)."""
    binary = shutil.which("prometheus-blackbox-exporter")
    if not binary:
        raise RuntimeError("apt-get install -y prometheus-blackbox-exporter")
    conf = os.path.join(out_dir, "blackbox.yml")
    with open(conf, "w", encoding="ascii") as f:
        f.write(f"modules:\n  http_2xx:\n    prober: http\n    timeout: {timeout}\n"
                "    http:\n      preferred_ip_protocol: ip4\n")
    return Exporter(out_dir, "blackbox_exporter",
                    [binary, f"--config.file={conf}", "--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])


def postgres_exporter(out_dir, dsn):
    """prometheus-postgres-exporter (Debian's defaults) with DATA_SOURCE_NAME=dsn."""
    binary = shutil.which("prometheus-postgres-exporter")
    if not binary:
        raise RuntimeError("apt-get install -y prometheus-postgres-exporter")
    sep = "&" if "?" in dsn else "?"
    return Exporter(out_dir, "postgres_exporter",
                    [binary, "--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    env={"DATA_SOURCE_NAME": f"{dsn}{sep}sslmode=disable"})


# ----------------------------------------------------------------------------- selftest

def selftest():
    install_signal_handlers()
    out = out_dir("stack-selftest")
    t0 = time.monotonic()
    with Stack(out) as s:
        print(f"postgres 127.0.0.1:{s.pg.port}, gateway {s.gateway.base()}, upstreams {s.upstreams.base()}")
        v = s.start_vigil(interval="1s")
        print(f"vigil pid {v.pid} on 127.0.0.1:{v.port}, config {v.config_path}")
        v.wait_ready(30)
        names = check_names(s.n_upstreams)
        try:
            wait_until(lambda: v.all_checks_pass(names), 30, "every check pass")
        except TimeoutError:
            print(v.get("/readyz?verbose")[1])
            raise
        print(v.get("/readyz?verbose")[1].rstrip())
        for name, c in sorted(v.diag()["vigil"]["checks"].items()):
            print(f"  {name:14} {c.get('status'):5} runs={c.get('runs')}")
        # The faults the other scripts inject, each once: they must be seen and recovered.
        t = s.secret.rotate()
        v.wait_status("/readyz", 503, 10)
        print(f"secret rotated -> /readyz 503 in {time.monotonic() - t:.2f}s: "
              f"{[ln for ln in v.get('/readyz?verbose')[1].splitlines() if ln.startswith('[-]')]}")
        s.gateway.restart_with_current_secret()
        v.wait_status("/readyz", 200, 10)
        t = s.pg.kill9()
        v.wait_status("/readyz", 503, 10)
        print(f"postgres kill -9 -> /readyz 503 in {time.monotonic() - t:.2f}s")
        s.pg.start()
        v.wait_status("/readyz", 200, 20)
        s.upstreams.set_mode(0, "hang")
        wait_until(lambda: "[-]upstream:u0" in v.get("/readyz?verbose")[1], 15, "upstream u0 failing")
        print(f"upstream u0 hang -> {[ln for ln in v.get('/readyz?verbose')[1].splitlines() if 'u0' in ln]}"
              " (upstreams are not critical: /readyz stays "
              f"{v.get('/readyz')[0]})")
        s.upstreams.set_mode(0, "ok")
        wait_until(lambda: v.all_checks_pass(names), 20, "every check pass again")
        pid = v.pid
        print(f"vigil fds {ProcStats.fd_count(pid)}, threads {ProcStats.thread_count(pid)}, "
              f"RSS {ProcStats.rss_kib(pid)} KiB, cpu {ProcStats.cpu_seconds(pid):.2f}s; load {loadavg()}")
    print(f"selftest ok in {time.monotonic() - t0:.1f}s; raw output in {out}")


def main(argv):
    if argv[1:2] == ["selftest"]:
        selftest()
        return 0
    print(__doc__)
    print("usage: python3 bench/stack.py selftest")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
