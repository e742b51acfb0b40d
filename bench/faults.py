"""Helpers shared by bench/detect.py and bench/soak.py (Python 3 standard library only).

``ReadyzWatcher`` polls vigil's /readyz every 10 ms in a thread, on a fresh loopback connection
each time (the way a kubelet or a load balancer probes), and keeps the status changes with their
``time.monotonic()``; a fault is timed from the moment it is injected to the first answer with the
expected status after it. Injecting in one thread and watching in another keeps a fault action
that blocks (``PgCluster.kill9()`` waits for the backends to exit, ``start()`` for the server to
accept) from delaying the observation. Everything else comes from bench/stack.py.
"""

import http.client
import threading
import time

POLL_S = 0.010


def http_status(port, path, timeout_s=1.0):
    """The status of GET path on 127.0.0.1:port, or 0 when it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


class ReadyzWatcher:
    """``with ReadyzWatcher(port) as w:`` polls /readyz every 10 ms until the block ends.

    ``w.first(code, after, timeout_s)`` waits (bounded) for the first answer ``code`` received
    after ``after`` (a ``time.monotonic()``) and returns its time; ``w.polls`` counts the polls."""

    def __init__(self, port, path="/readyz"):
        self.port = port
        self.path = path
        self.answers = []  # (monotonic time the answer arrived, status), on changes only
        self.polls = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        last = None
        while not self._stop.is_set():
            status = http_status(self.port, self.path)
            now = time.monotonic()
            with self._cond:
                self.polls += 1
                if status != last:
                    self.answers.append((now, status))
                    last = status
                    self._cond.notify_all()
            self._stop.wait(POLL_S)

    def current(self):
        with self._cond:
            return self.answers[-1][1] if self.answers else None

    def first(self, code, after, timeout_s):
        """Monotonic time of the first change to ``code`` received after ``after``; TimeoutError
        at the limit. The caller injects a fault (or a repair) while the status is another one."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for t, status in self.answers:
                    if status == code and t > after:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.path} did not answer {code} within {timeout_s:g} s")
                self._cond.wait(min(left, 0.05))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
