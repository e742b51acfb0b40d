#!/usr/bin/env python3
"""A fake Kubernetes API server for vigil's tests: real HTTPS, the paths vigil uses, and the
answers a real cluster gives, copied from the upstream source (each behaviour names the file
and function it copies), so that the fake cannot agree with a client's misunderstanding.

It serves list (paginated with `limit`/`continue`) and watch (with `resourceVersion`, periodic
and pre-deadline BOOKMARK events, 410 Gone as an HTTP status or as an ERROR event inside a 200
stream) of pods (by field selector) and EndpointSlices (by label selector); metrics-server's
PodMetrics (404 until a pod has been scraped twice, its Status naming `<namespace>/<pod>`); and
events.k8s.io/v1 Events (POST, merge PATCH) validated as the API server validates them (422
with a Status otherwise), which expire `event_ttl` after their last write. It checks the bearer
token (401 otherwise), can answer 403 for a resource, and counts requests and the TCP
connections they came on (HTTP/1.1 keep-alive: a client may send many requests, watches
included, on one connection).

Faults, set over the control port: a stream cut (EOF mid-stream, as when an API server rolls;
abrupt, inside an event, or a clean end), 429 with Retry-After, 503, 504 "too large resource
version" for the next N requests of a resource, 410 on every watch, watches that go silent
(no event, no bookmark, the connection kept open), watches closed after one bookmark,
metrics-server not installed.

Every object it serves or receives whose kind the official OpenAPI schema has (Pod, PodList,
EndpointSlice, EndpointSliceList, events.k8s.io/v1 Event) is validated with the
`kubernetes_validate` package (strict): an object that does not validate is refused with
HTTP 500 (served) or 422 (received) and recorded, and the test asserts that nothing was.
PodMetrics is not in that schema; its shape follows k8s.io/metrics' types.

Usage: fake_kube_api.py --cert CERT --key KEY --token TOKEN
Prints "API <port>" and "CONTROL <port>" on stdout, then serves until stdin closes.
The control server (plain HTTP on 127.0.0.1) takes JSON: see Control.do_POST.
"""

import argparse
import base64
import copy
import json
import random
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate

K8S_VERSION = "1.37"

# staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go, defaultBookmarkFrequency: a healthy
# watch that asked for bookmarks gets one about once a minute. Tests scale it down
# (/bookmark_period), never vigil.
DEFAULT_BOOKMARK_PERIOD = 60.0
# The API server's --event-ttl default (cmd/kube-apiserver/app/options): an Event is deleted this
# long after its last write (pkg/registry/core/event/storage/storage.go, TTLFunc, applied on
# every create and update).
DEFAULT_EVENT_TTL = 3600.0

lock = threading.Condition()
state = {
    "token": "",
    "rv": 100,
    "pods": {},
    "slices": {},
    "metrics": {},
    # metrics-server: until when (time) its pod lister does not know the pod yet, until when it
    # has not scraped the pod twice, and for how many more reads it has not.
    "metrics_unknown_until": 0.0,
    "metrics_unscraped_until": 0.0,
    "metrics_unscraped_reads": 0,
    "metrics_installed": True,
    "history": [],  # (rv, resource, type, object)
    "compacted": 0,
    "forbidden": set(),
    "gone_http": False,  # the next watch answers 410 as an HTTP status
    "gone_every": None,  # None, "http" or "event": every watch answers 410 this way
    "cut": 0,  # generation: open watches at an older generation end
    "cut_how": "abrupt",
    "silence": 0,  # generation: open watches at an older generation go silent
    "silent_new": False,  # new watches are silent too
    "bookmark": 0,  # generation: a bookmark on every open watch now
    "bookmark_period": DEFAULT_BOOKMARK_PERIOD,
    "close_after_bookmark": False,
    "gone_event": 0,
    "faults": {},  # resource -> [fault, ...], each answering the next matching request
    "page_cap": None,  # the most items a list page holds, whatever the client's limit
    "snapshots": {},  # continue token -> (rv, items) of the list it continues
    "events": {},  # name -> {"obj": event, "written": time}
    "event_ttl": DEFAULT_EVENT_TTL,
    "event_answers_lost": 0,  # the next creates land, then answer 504 Timeout (the timeout filter)
    "event_log": [],
    "errors": [],
    "requests": [],  # [time, method, path, connection, status]
    "connections": [],  # the time each TCP connection was accepted
    "open": set(),  # the sockets of the connections still open (closed by /down)
    "slow": 0.0,
    "stopping": False,
}


def record_error(message):
    state["errors"].append(message)
    print("fake_kube_api: " + message, file=sys.stderr, flush=True)


def validate(obj, what):
    """Strict schema validation; records and returns the error text, or None."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        return None
    except Exception as error:  # ValidationError, SchemaNotFoundError, ...
        text = "%s does not validate: %s" % (what, getattr(error, "message", error))
        with lock:
            record_error(text)
        return text


def status(code, reason, message, details=None):
    """meta/v1 Status as apimachinery's pkg/api/errors builds it."""
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}
    if details is not None:
        obj["details"] = details
    return obj


def not_found(group, resource, name):
    """apimachinery pkg/api/errors NewNotFound(GroupResource{group, resource}, name)."""
    qualified = resource if not group else "%s.%s" % (resource, group)
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return status(404, "NotFound", '%s "%s" not found' % (qualified, name), details)


def expired(since, oldest):
    """staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go getAllEventsSinceLocked:
    errors.NewResourceExpired("too old resource version: %d (%d)")."""
    return status(410, "Expired", "too old resource version: %d (%d)" % (since, oldest))


def too_large_rv(asked, current):
    """staging/src/k8s.io/apiserver/pkg/storage/errors.go NewTooLargeResourceVersionError: a
    504 Timeout (NewTimeoutError, 'Timeout: ' + message) with the ResourceVersionTooLarge cause
    and retryAfterSeconds 1 (cacher.go resourceVersionTooHighRetrySeconds)."""
    return status(504, "Timeout", "Timeout: Too large resource version: %d, current: %d" % (asked, current),
                  {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                   "retryAfterSeconds": 1})


def next_rv():
    state["rv"] += 1
    return str(state["rv"])


def put(resource, name, obj):
    """Stores obj under resource/name with a fresh resourceVersion and notes the watch event."""
    table = state[resource]
    kind = "MODIFIED" if name in table else "ADDED"
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = next_rv()
    table[name] = obj
    state["history"].append((state["rv"], resource, kind, obj))
    lock.notify_all()


def delete(resource, name):
    obj = state[resource].pop(name, None)
    if obj is not None:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = next_rv()
        state["history"].append((state["rv"], resource, "DELETED", obj))
        lock.notify_all()


def matches(resource, obj, selector):
    if resource == "pods":
        return obj["metadata"]["name"] == selector
    return obj["metadata"].get("labels", {}).get("kubernetes.io/service-name") == selector


def bookmark_object(resource, rv):
    """The object of a BOOKMARK event: the cacher sends c.newFunc() (an empty object of the
    type) with only its resourceVersion set (cacher.go dispatchEvents / cache_watcher.go), so
    it serialises with the type's non-omitempty fields at their zero values."""
    if resource == "pods":
        return {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv), "creationTimestamp": None},
                "spec": {"containers": None}, "status": {}}
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv), "creationTimestamp": None},
            "addressType": "", "endpoints": None}


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.record = None
        with lock:
            state["connections"].append(time.time())
            self.connection_id = len(state["connections"])
            state["open"].add(self.connection)

    def finish(self):
        with lock:
            state["open"].discard(self.connection)
        super().finish()

    def send_response(self, code, message=None):
        if self.record is not None:
            with lock:
                self.record[4] = code
        super().send_response(code, message)

    def send_json(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_status(self, obj):
        """apiserver pkg/endpoints/handlers/responsewriters/writers.go ErrorNegotiated: a
        Status whose details carry retryAfterSeconds also sets the Retry-After header."""
        headers = []
        retry = (obj.get("details") or {}).get("retryAfterSeconds")
        if retry:
            headers.append(("Retry-After", str(retry)))
        self.send_json(obj["code"], obj, headers)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authorized(self):
        with lock:
            token = state["token"]
        if self.headers.get("Authorization") != "Bearer " + token:
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def forbidden(self, resource, verb, group, namespace):
        with lock:
            refused = resource in state["forbidden"]
        if refused:
            name = resource if group == "" else "pods" if resource == "metrics" else resource
            self.send_json(403, status(403, "Forbidden",
                                       '%s is forbidden: User "system:serviceaccount:%s:vigil" cannot %s resource "%s" in API group "%s" in the namespace "%s"'
                                       % (name, namespace, verb, name, group, namespace),
                                       {"kind": name, "group": group}))
        return refused

    def handle_one_request(self):
        self.record = None
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with lock:
            self.record = [time.time(), method, self.path, self.connection_id, None]
            state["requests"].append(self.record)
            slow = state["slow"]
        if slow:
            time.sleep(slow)
        # The filters run in this order (apiserver pkg/server/config.go DefaultBuildHandlerChain):
        # authentication, then flow control (429), then authorization (403).
        if not self.authorized():
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path)
        if m and method == "GET":
            return self.list_or_watch("pods", m.group(1), query)
        m = re.fullmatch(r"/apis/discovery.k8s.io/v1/namespaces/([^/]+)/endpointslices", url.path)
        if m and method == "GET":
            return self.list_or_watch("slices", m.group(1), query)
        m = re.fullmatch(r"/apis/metrics.k8s.io/v1beta1/namespaces/([^/]+)/pods/([^/]+)", url.path)
        if m and method == "GET":
            return self.pod_metrics(m.group(1), m.group(2))
        m = re.fullmatch(r"/apis/events.k8s.io/v1/namespaces/([^/]+)/events(?:/([^/]+))?", url.path)
        if m and method in ("POST", "PATCH"):
            if self.fault("events", "create" if method == "POST" else "patch"):
                return
            if self.forbidden("events", "create" if method == "POST" else "patch", "events.k8s.io", m.group(1)):
                return
            return self.event(method, m.group(1), m.group(2))
        with lock:
            record_error("unexpected request: %s %s" % (method, self.path))
        self.send_json(404, status(404, "NotFound", "the server could not find the requested resource", {}))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    # --- faults -------------------------------------------------------------------------------

    def fault(self, resource, verb, since=0):
        """Answers this request with the next fault set for `resource` (and `verb`), if any."""
        with lock:
            queue = state["faults"].get(resource) or []
            found = next((f for f in queue if f.get("verb") in (None, verb)), None)
            if found is None:
                return False
            found["count"] -= 1
            if found["count"] <= 0:
                queue.remove(found)
            current = state["rv"]
        code = found["code"]
        retry_after = str(found.get("retry_after", 1))
        if code == 429 and found.get("shape", "text") == "text":
            # apiserver pkg/server/filters/maxinflight.go tooManyRequests (and the priority and
            # fairness filter, which calls the same): Retry-After and a plain-text body written
            # by Go's http.Error, not a Status.
            body = b"Too many requests, please try again later.\n"
            self.send_response(429)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif code == 429:
            # apiserver pkg/registry/generic/registry/store.go while the watch cache
            # (re)initializes (cacher.go ready): NewTooManyRequests with retryAfterSeconds.
            self.send_status(status(429, "TooManyRequests", "storage is (re)initializing",
                                    {"retryAfterSeconds": int(retry_after)}))
        elif code == 504 and verb == "watch" and found.get("how", "event") == "event":
            # cacher.go Watch: waitUntilWatchCacheFreshAndForceAllEvents fails with
            # NewTooLargeResourceVersionError, returned as newErrWatcher(err): an ERROR event
            # inside a 200 stream.
            self.start_stream()
            self.chunk({"type": "ERROR", "object": too_large_rv(since + 1, current)})
            self.end_stream()
        elif code == 504:
            # cacher.go GetList / watch_cache.go waitUntilFreshAndBlock: the 504 as an HTTP status.
            self.send_status(too_large_rv(since + 1, current))
        elif code == 503:
            # apimachinery NewServiceUnavailable, as cacher.go Watch/GetList answer while the
            # cacher is not ready, and the aggregator while metrics-server has no endpoint.
            self.send_status(status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
        elif code == 410:
            self.send_status(expired(since, current))
        else:
            self.send_status(status(code, "InternalError", "an error on the server (\"\") has prevented the request from succeeding"))
        return True

    # --- metrics-server -------------------------------------------------------------------------

    def pod_metrics(self, namespace, name):
        if self.fault("metrics", "get"):
            return
        if self.forbidden("metrics", "get", "metrics.k8s.io", namespace):
            return
        now = time.time()
        with lock:
            installed = state["metrics_installed"]
            found = copy.deepcopy(state["metrics"].get(name))
            unknown = now < state["metrics_unknown_until"]
            unscraped = now < state["metrics_unscraped_until"]
            if not unknown and state["metrics_unscraped_reads"] > 0:
                state["metrics_unscraped_reads"] -= 1
                unscraped = True
        if not installed:
            # No APIService for metrics.k8s.io: the API server's own NotFound handler
            # (apiserver pkg/endpoints/handlers/responsewriters, NotFound: no details name).
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource", {}))
        if unknown:
            # metrics-server pkg/api/pod.go Get: its pod lister does not know the pod yet; the
            # lister's NotFound (GroupResource{"", "pods"}, the bare name) is returned as is.
            return self.send_json(404, not_found("", "pods", name))
        if found is None or unscraped:
            # metrics-server pkg/storage/pod.go GetMetrics needs two scrapes of every container
            # (`last` and `prev`), then pkg/api/pod.go Get: len(ms) == 0 ->
            # errors.NewNotFound(m.groupResource, fmt.Sprintf("%s/%s", namespace, name)).
            return self.send_json(404, not_found("metrics.k8s.io", "pods", "%s/%s" % (namespace, name)))
        return self.send_json(200, found)

    # --- list and watch -------------------------------------------------------------------------

    def selector(self, resource, query):
        if resource == "pods":
            value = query.get("fieldSelector", "")
            prefix = "metadata.name="
        else:
            value = query.get("labelSelector", "")
            prefix = "kubernetes.io/service-name="
        if not value.startswith(prefix) or "," in value:
            with lock:
                record_error("%s asked without the selector %s…: %r" % (resource, prefix, self.path))
            return None
        return value[len(prefix):]

    def list_or_watch(self, resource, namespace, query):
        rbac = "pods" if resource == "pods" else "endpointslices"
        group = "" if resource == "pods" else "discovery.k8s.io"
        watching = query.get("watch") in ("true", "1")
        try:
            since = int(query.get("resourceVersion") or "0")
        except ValueError:
            since = 0
        if self.fault(rbac, "watch" if watching else "list", since):
            return
        if self.forbidden(rbac, "watch" if watching else "list", group, namespace):
            return
        selector = self.selector(resource, query)
        if selector is None:
            return self.send_json(400, status(400, "BadRequest", "a selector is required"))
        if watching:
            return self.watch(resource, selector, query, since)
        return self.list(resource, selector, query)

    def list(self, resource, selector, query):
        """A list page. apiserver pkg/storage/etcd3/store.go GetList: `limit` items at most and
        `continue` while more remain, the pages read at the first page's revision; a continue
        token of a compacted revision answers 410 Expired. The fake may also cap a page below
        the client's limit (the server "may return fewer items than requested", ListMeta docs)."""
        try:
            limit = max(0, int(query.get("limit") or "0"))
        except ValueError:
            limit = 0
        token = query.get("continue")
        with lock:
            if token:
                snapshot = state["snapshots"].get(token)
                if snapshot is None or snapshot[0] < state["compacted"]:
                    gone = True
                else:
                    gone = False
                    rv, items, start = snapshot
            else:
                gone = False
                rv = state["rv"]
                items = sorted((copy.deepcopy(o) for o in state[resource].values() if matches(resource, o, selector)),
                               key=lambda o: o["metadata"]["name"])
                start = 0
            page_cap = state["page_cap"]
        if gone:
            # etcd3/store.go decodeContinue + the compaction check: errors.NewResourceExpired.
            return self.send_json(410, status(410, "Expired",
                                              "The provided continue parameter is too old to display a consistent list result. "
                                              "You can start a new list without the continue parameter, or use the continue token "
                                              "in this response to retrieve the remainder of the results. Continuing with the "
                                              "provided token results in an inconsistent list - objects that were created, modified, "
                                              "or deleted between the time the first chunk was returned and now may show up in the list."))
        size = len(items) - start
        if limit:
            size = min(size, limit if page_cap is None else min(limit, page_cap))
        page = [copy.deepcopy(item) for item in items[start:start + size]]
        for item in page:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        meta = {"resourceVersion": str(rv)}
        if start + size < len(items):
            # The token's shape is etcd3's (base64 of {"v","rv","start"}); the fake keeps the rest.
            after = items[start + size]["metadata"]["name"]
            token = base64.b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": after + "\u0000"}).encode()).decode()
            with lock:
                state["snapshots"][token] = (rv, items, start + size)
            meta["continue"] = token
        if resource == "pods":
            listed = {"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": page}
        else:
            listed = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": meta, "items": page}
        error = validate(listed, listed["kind"])
        if error:
            return self.send_json(500, status(500, "InternalError", error))
        self.send_json(200, listed)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def end_stream(self):
        """The clean end of a watch (the handler returns): the terminating chunk; the connection
        stays open for the client's next request (keep-alive)."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.write_chunk(data)

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def drop(self):
        """The connection dropped: no terminating chunk, the socket shut down."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stay_silent(self):
        """A dead connection (a partition, a half-open socket behind a load balancer): nothing
        more is written, not even the end of the stream, and the socket stays open until the
        client closes it (or the fake stops)."""
        self.close_connection = True
        while True:
            with lock:
                if state["stopping"]:
                    return
            try:
                readable, _, _ = select.select([self.connection], [], [], 1.0)
            except (OSError, ValueError):
                return
            if readable:
                # The client sends nothing while it waits for the stream: this is its close.
                return

    def watch(self, resource, selector, query, since):
        """A watch as the watch cache serves it (apiserver storage/cacher/cacher.go Watch and
        cache_watcher.go): the events after `since`, a BOOKMARK every bookmark period
        (defaultBookmarkFrequency) and one 2 s before the deadline (cacheWatcher.nextBookmarkTime),
        the stream ended cleanly at timeoutSeconds; a version older than the cache's window is an
        ERROR event with a 410 Status inside a 200 stream (getAllEventsSinceLocked ->
        newErrWatcher)."""
        try:
            timeout = float(query.get("timeoutSeconds") or "0")
        except ValueError:
            timeout = 0.0
        if timeout <= 0:
            # apiserver pkg/endpoints/handlers/get.go ListResource: minRequestTimeout (1800 s)
            # times a random factor in [1, 2).
            timeout = 1800.0 * (1.0 + random.random())
        bookmarks = query.get("allowWatchBookmarks") == "true"
        with lock:
            gone_http = state["gone_http"] or state["gone_every"] == "http"
            state["gone_http"] = False
            gone_event = state["gone_every"] == "event" or since < state["compacted"]
            oldest = state["compacted"]
            cut, bookmark, gone_gen, silence = state["cut"], state["bookmark"], state["gone_event"], state["silence"]
            silent = state["silent_new"]
            period = state["bookmark_period"]
            close_after_bookmark = state["close_after_bookmark"]
        if gone_http:
            return self.send_json(410, expired(since, oldest))
        self.start_stream()
        if gone_event:
            self.chunk({"type": "ERROR", "object": expired(since, oldest)})
            return self.end_stream()
        if silent:
            return self.stay_silent()
        start = time.time()
        end = start + timeout
        # The bookmark before the deadline, so that the client resumes from a recent version.
        last_call = end - 2.0 if bookmarks and timeout > 2.0 else None
        next_bookmark = start if close_after_bookmark else start + period
        sent = since
        while True:
            with lock:
                while True:
                    pending = [h for h in state["history"] if h[0] > sent and h[1] == resource]
                    now = time.time()
                    due = [end, next_bookmark] + ([last_call] if last_call is not None else [])
                    if pending or state["cut"] != cut or state["bookmark"] != bookmark \
                            or state["gone_event"] != gone_gen or state["silence"] != silence \
                            or now >= min(due):
                        break
                    lock.wait(timeout=max(0.0, min(1.0, min(due) - now)))
                now_silent = state["silence"] != silence
                now_cut = state["cut"] != cut
                how = state["cut_how"]
                now_gone = state["gone_event"] != gone_gen
                now_bookmark = state["bookmark"] != bookmark
                bookmark = state["bookmark"]
                rv = state["rv"]
            if now_silent:
                return self.stay_silent()
            if now_cut:
                if how == "clean":
                    return self.end_stream()
                if how == "partial":
                    # The connection drops inside an event: half a line, then EOF.
                    line = (json.dumps({"type": "BOOKMARK", "object": bookmark_object(resource, rv)}) + "\n").encode()
                    self.write_chunk(line[: len(line) // 2])
                return self.drop()
            if now_gone:
                self.chunk({"type": "ERROR", "object": expired(sent, rv)})
                break
            for (version, _, kind, obj) in pending:
                sent = version
                if not matches(resource, obj, selector):
                    continue
                error = validate(obj, "%s %s" % (obj.get("kind"), obj["metadata"]["name"]))
                if error:
                    self.chunk({"type": "ERROR", "object": status(500, "InternalError", error)})
                    continue
                self.chunk({"type": kind, "object": obj})
            now = time.time()
            periodic = now >= next_bookmark
            deadline = last_call is not None and now >= last_call
            if (now_bookmark or periodic or deadline) and bookmarks:
                self.chunk({"type": "BOOKMARK", "object": bookmark_object(resource, rv)})
                sent = max(sent, rv)
                if close_after_bookmark:
                    break
            if periodic:
                next_bookmark = now + period
            if deadline:
                last_call = None
            if close_after_bookmark and not bookmarks:
                break
            if now >= end:
                break
        self.end_stream()

    # --- Events ---------------------------------------------------------------------------------

    def event(self, method, namespace, name):
        try:
            body = json.loads(self.read_body() or b"{}")
        except ValueError as error:
            with lock:
                record_error("event body is not JSON: %s" % error)
            return self.send_json(400, status(400, "BadRequest", "not JSON"))
        now = time.time()
        with lock:
            ttl = state["event_ttl"]
            for gone in [n for n, e in state["events"].items() if now - e["written"] > ttl]:
                del state["events"][gone]
            if method == "PATCH":
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    record_error("PATCH with Content-Type %r" % self.headers.get("Content-Type"))
                current = state["events"].get(name)
                if current is None:
                    return self.send_json(404, not_found("events.k8s.io", "events", name))
                old = current["obj"]
                merged = merge_patch(copy.deepcopy(old), body)
            else:
                old = None
                merged = body
                name = (body.get("metadata") or {}).get("name")
                if name in state["events"]:
                    return self.send_json(409, status(409, "AlreadyExists", 'events.events.k8s.io "%s" already exists' % name,
                                                      {"name": name, "group": "events.k8s.io", "kind": "events"}))
        if (merged.get("metadata") or {}).get("namespace") not in (None, namespace):
            # apiserver pkg/registry/rest/create.go BeforeCreate: the object's namespace must be
            # the request's.
            with lock:
                record_error("Event %s: metadata.namespace is not the namespace of the path" % name)
            return self.send_json(400, status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"))
        error = validate(merged, "Event %s" % name)
        if error:
            return self.send_json(422, status(422, "Invalid", error))
        causes = validate_event(merged, old)
        if causes:
            message = 'Event.events.k8s.io "%s" is invalid: %s' % (
                name, "; ".join("%s: %s" % (c["field"], c["message"]) for c in causes))
            with lock:
                record_error(message)
            return self.send_json(422, status(422, "Invalid", message,
                                              {"name": name or "", "group": "events.k8s.io", "kind": "Event", "causes": causes}))
        with lock:
            merged["metadata"]["resourceVersion"] = next_rv()
            state["events"][name] = {"obj": merged, "written": time.time()}
            state["event_log"].append([method, name, copy.deepcopy(merged)])
            lost = method == "POST" and state["event_answers_lost"] > 0
            if lost:
                state["event_answers_lost"] -= 1
        if lost:
            # apiserver pkg/server/filters/timeout.go: the request's deadline passed while the
            # handler went on; the client gets a 504 though the Event was stored.
            return self.send_json(504, status(504, "Timeout", "Timeout: request did not complete within requested timeout - context deadline exceeded"))
        self.send_json(201 if method == "POST" else 200, merged)


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
MICRO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def validate_event(event, old=None):
    """kubernetes pkg/apis/core/validation/events.go as an events.k8s.io/v1 request meets it
    (the v1 fields mapped to the internal ones: regarding -> involvedObject, note -> message,
    deprecated* -> the legacy fields): ValidateEventCreate (legacyValidateEvent, ValidateObjectMeta,
    validateV1EventSeries, eventTime, type, the legacy fields unset) or, with `old`,
    ValidateEventUpdate (legacyValidateEvent, ValidateObjectMetaUpdate, the series when changed,
    and the immutable fields). Lengths are Go's len(): bytes. Returns the Status causes."""
    causes = []

    def invalid(field, message):
        causes.append({"reason": "FieldValueInvalid", "message": "Invalid value: %s" % message, "field": field})

    def required(field):
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": field})

    def length(value):
        return len((value or "").encode())

    meta = event.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    regarding = event.get("regarding") or {}
    # legacyValidateEvent, with eventTime set (the branch every events.k8s.io/v1 Event takes).
    if event.get("eventTime"):
        if not regarding.get("namespace") and namespace not in ("default", "kube-system"):
            invalid("involvedObject.namespace", '"": does not match event.namespace')
        controller = event.get("reportingController") or ""
        if not controller:
            required("reportingController")
        elif length(controller) > 316 or not re.fullmatch(r"(%s/)?%s" % (DNS1123_SUBDOMAIN, QUALIFIED_NAME), controller):
            invalid("reportingController", '"%s": not a qualified name' % controller)
        for field, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            if not event.get(field):
                required(field)
            if length(event.get(field)) > limit:
                invalid(field, '"": can have at most %d characters' % limit)
        if length(event.get("note")) > 1024:
            invalid("message", '"": can have at most 1024 characters')
    if not re.fullmatch(DNS1123_SUBDOMAIN, namespace) or len(namespace) > 253:
        invalid("namespace", '"%s": a lowercase RFC 1123 subdomain' % namespace)

    def series_problems():
        series = event.get("series")
        if series is not None:
            if (series.get("count") or 0) < 2:
                invalid("series.count", '"": should be at least 2')
            if not series.get("lastObservedTime"):
                required("series.lastObservedTime")
            elif not re.fullmatch(MICRO_TIME, series["lastObservedTime"]):
                invalid("series.lastObservedTime", '"%s": not a MicroTime' % series["lastObservedTime"])

    if old is None:
        # ValidateEventCreate, strict for events.k8s.io/v1.
        name = meta.get("name") or ""
        if not name:
            required("metadata.name")
        elif len(name) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, name):
            invalid("metadata.name", '"%s": a lowercase RFC 1123 subdomain' % name)
        series_problems()
        if not event.get("eventTime"):
            required("eventTime")
        elif not re.fullmatch(MICRO_TIME, event["eventTime"]):
            invalid("eventTime", '"%s": not a MicroTime' % event["eventTime"])
        if event.get("type") not in ("Normal", "Warning"):
            invalid("type", '"": has invalid value: %s' % event.get("type"))
        for field, legacy in (("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
                              ("deprecatedCount", "count"), ("deprecatedSource", "source")):
            if event.get(field):
                invalid(legacy, '"": needs to be unset')
    else:
        # ValidateEventUpdate.
        old_meta = old.get("metadata") or {}
        for field in ("name", "namespace", "uid", "creationTimestamp"):
            if meta.get(field) != old_meta.get(field):
                invalid("metadata." + field, "field is immutable")
        if event.get("series") != old.get("series"):
            series_problems()
        for field, internal in (("regarding", "involvedObject"), ("reason", "reason"), ("note", "message"),
                                ("deprecatedSource", "source"), ("deprecatedFirstTimestamp", "firstTimestamp"),
                                ("deprecatedLastTimestamp", "lastTimestamp"), ("deprecatedCount", "count"),
                                ("type", "type"), ("eventTime", "eventTime"), ("action", "action"),
                                ("related", "related"), ("reportingController", "reportingController"),
                                ("reportingInstance", "reportingInstance")):
            if event.get(field) != old.get(field):
                invalid(internal, "field is immutable")
    return causes


class ApiServer:
    def __init__(self, cert, key, port=0):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.context = context
        self.port = port
        self.httpd = None
        self.thread = None

    def start(self):
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Api, bind_and_activate=False)
        httpd.allow_reuse_address = True
        httpd.daemon_threads = True
        httpd.server_bind()
        httpd.server_activate()
        httpd.socket = self.context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = httpd.server_address[1]
        self.httpd = httpd
        with lock:
            state["stopping"] = False
        self.thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """The API server goes away: it stops listening and every connection it holds, idle
        kept-alive ones included, is closed (a real server's process exits with them)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        with lock:
            for connection in list(state["open"]):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            state["cut"] += 1
            state["cut_how"] = "abrupt"
            state["stopping"] = True
            lock.notify_all()


api = None


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            if self.path == "/requests":
                return self.answer(200, {"requests": state["requests"]})
            if self.path == "/connections":
                return self.answer(200, {"connections": state["connections"]})
            if self.path == "/events":
                return self.answer(200, {"events": {n: e["obj"] for n, e in state["events"].items()},
                                         "log": state["event_log"]})
            if self.path == "/errors":
                return self.answer(200, {"errors": state["errors"]})
        self.answer(404, {})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = self.path
        now = time.time()
        if path == "/pod":
            error = validate(body, "Pod fixture")
            if error:
                return self.answer(400, {"error": error})
            with lock:
                put("pods", body["metadata"]["name"], body)
        elif path == "/slices":
            for item in body["items"]:
                error = validate(item, "EndpointSlice fixture")
                if error:
                    return self.answer(400, {"error": error})
            with lock:
                names = {item["metadata"]["name"] for item in body["items"]}
                for name in list(state["slices"]):
                    if name not in names:
                        delete("slices", name)
                for item in body["items"]:
                    put("slices", item["metadata"]["name"], item)
        elif path == "/metrics":
            with lock:
                if body.get("absent"):
                    state["metrics"].pop(body["pod"], None)
                else:
                    state["metrics"][body["metadata"]["name"]] = body
        elif path == "/metrics_delay":
            # From now: metrics-server's pod lister does not know the pod for `unknown_seconds`,
            # and it has no figures (two scrapes) for `unscraped_seconds` / the next
            # `unscraped_reads` reads.
            with lock:
                state["metrics_unknown_until"] = now + float(body.get("unknown_seconds", 0))
                state["metrics_unscraped_until"] = now + float(body.get("unscraped_seconds", 0))
                state["metrics_unscraped_reads"] = int(body.get("unscraped_reads", 0))
        elif path == "/metrics_installed":
            with lock:
                state["metrics_installed"] = bool(body.get("installed", True))
        elif path == "/token":
            with lock:
                state["token"] = body["token"]
        elif path == "/forbid":
            with lock:
                if body.get("forbidden", True):
                    state["forbidden"].add(body["resource"])
                else:
                    state["forbidden"].discard(body["resource"])
        elif path == "/slow":
            with lock:
                state["slow"] = float(body["seconds"])
        elif path == "/cut":
            # Open watches end: "abrupt" (EOF mid-stream, no terminating chunk: an API server
            # rolling), "partial" (EOF inside an event's line), "clean" (the end of the stream).
            how = body.get("how", "abrupt")
            if how not in ("abrupt", "partial", "clean"):
                return self.answer(400, {"error": "how: abrupt, partial or clean"})
            with lock:
                state["cut"] += 1
                state["cut_how"] = how
                lock.notify_all()
        elif path == "/gone":
            with lock:
                if "every" in body:
                    state["gone_every"] = body.get("how", "event") if body["every"] else None
                    state["cut"] += 1 if body["every"] else 0
                    state["cut_how"] = "clean"
                elif body.get("how") == "http":
                    state["gone_http"] = True
                    state["cut"] += 1
                    state["cut_how"] = "abrupt"
                else:
                    state["compacted"] = state["rv"]
                    state["gone_event"] += 1
                lock.notify_all()
        elif path == "/bookmark":
            with lock:
                state["bookmark"] += 1
                lock.notify_all()
        elif path == "/bookmark_period":
            with lock:
                state["bookmark_period"] = float(body["seconds"])
                lock.notify_all()
        elif path == "/silence":
            # The open watches go silent; with "new": true every later watch too.
            with lock:
                state["silence"] += 1
                state["silent_new"] = bool(body.get("new", False))
                lock.notify_all()
        elif path == "/close_after_bookmark":
            with lock:
                state["close_after_bookmark"] = bool(body.get("on", True))
                state["cut"] += 1
                state["cut_how"] = "clean"
                lock.notify_all()
        elif path == "/fault":
            # {"resource": "pods"|"endpointslices"|"metrics"|"events", "code": 429|503|504|500|410,
            #  "count": N, "verb": optional "list"|"watch"|"get"|"create"|"patch",
            #  "retry_after": seconds, "shape": "text"|"status" (429), "how": "event"|"http" (504 watch)}
            fault = dict(body)
            fault["count"] = int(fault.get("count", 1))
            with lock:
                state["faults"].setdefault(fault.pop("resource"), []).append(fault)
        elif path == "/page_cap":
            with lock:
                state["page_cap"] = body.get("items")
        elif path == "/event_answers_lost":
            with lock:
                state["event_answers_lost"] = int(body["count"])
        elif path == "/event_ttl":
            with lock:
                state["event_ttl"] = float(body["seconds"])
        elif path == "/down":
            api.stop()
        elif path == "/up":
            api.start()
        else:
            return self.answer(404, {})
        self.answer(200, {"rv": state["rv"]})


def main():
    global api
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    state["token"] = args.token
    api = ApiServer(args.cert, args.key)
    api.start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print("API %d" % api.port, flush=True)
    print("CONTROL %d" % control.server_address[1], flush=True)
    # Serve until the test goes away (its end of stdin closes).
    sys.stdin.read()


if __name__ == "__main__":
    main()
