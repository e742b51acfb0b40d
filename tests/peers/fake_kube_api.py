#!/usr/bin/env python3
"""A fake Kubernetes API server for vigil's tests: real HTTPS, the paths vigil uses.

It serves list and watch of pods (by field selector) and EndpointSlices (by label selector)
with resourceVersions, BOOKMARK events and 410 Gone; the metrics API's PodMetrics; and accepts
events.k8s.io/v1 Events (POST, merge PATCH). It checks the bearer token (401 otherwise), can
answer 403 for a resource, and counts requests.

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
import copy
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate

K8S_VERSION = "1.37"

lock = threading.Condition()
state = {
    "token": "",
    "rv": 100,
    "pods": {},
    "slices": {},
    "metrics": {},
    "history": [],  # (rv, resource, type, object)
    "compacted": 0,
    "forbidden": set(),
    "gone_http": False,
    "cut": 0,  # generation: open watches at an older generation end abruptly
    "bookmark": 0,
    "gone_event": 0,
    "events": {},
    "event_log": [],
    "errors": [],
    "requests": [],
    "slow": 0.0,
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
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}
    if details:
        obj["details"] = details
    return obj


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


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with lock:
            state["requests"].append([time.time(), method, self.path])
            slow = state["slow"]
        if slow:
            time.sleep(slow)
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
            if self.forbidden("metrics", "get", "metrics.k8s.io", m.group(1)):
                return
            with lock:
                found = copy.deepcopy(state["metrics"].get(m.group(2)))
            if found is None:
                return self.send_json(404, status(404, "NotFound", 'pods.metrics.k8s.io "%s" not found' % m.group(2),
                                                  {"name": m.group(2), "group": "metrics.k8s.io", "kind": "pods"}))
            return self.send_json(200, found)
        m = re.fullmatch(r"/apis/events.k8s.io/v1/namespaces/([^/]+)/events(?:/([^/]+))?", url.path)
        if m and method in ("POST", "PATCH"):
            if self.forbidden("events", "create" if method == "POST" else "patch", "events.k8s.io", m.group(1)):
                return
            return self.event(method, m.group(1), m.group(2))
        with lock:
            record_error("unexpected request: %s %s" % (method, self.path))
        self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

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
        if self.forbidden(rbac, "watch" if watching else "list", group, namespace):
            return
        selector = self.selector(resource, query)
        if selector is None:
            return self.send_json(400, status(400, "BadRequest", "a selector is required"))
        if watching:
            return self.watch(resource, selector, query)
        with lock:
            items = [copy.deepcopy(o) for o in state[resource].values() if matches(resource, o, selector)]
            rv = str(state["rv"])
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        if resource == "pods":
            listed = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}
        else:
            listed = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                      "metadata": {"resourceVersion": rv}, "items": items}
        error = validate(listed, listed["kind"])
        if error:
            return self.send_json(500, status(500, "InternalError", error))
        self.send_json(200, listed)

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, resource, selector, query):
        try:
            since = int(query.get("resourceVersion") or "0")
        except ValueError:
            since = 0
        timeout = float(query.get("timeoutSeconds") or "1800")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        with lock:
            if state["gone_http"]:
                state["gone_http"] = False
                gone = True
            else:
                gone = False
            compacted = since < state["compacted"]
            cut, bookmark, gone_event = state["cut"], state["bookmark"], state["gone_event"]
        if gone:
            return self.send_json(410, status(410, "Expired", "too old resource version: %d" % since))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if compacted:
            self.chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version: %d" % since)})
            self.wfile.write(b"0\r\n\r\n")
            return
        end = time.time() + timeout
        sent = since
        while True:
            with lock:
                while True:
                    pending = [h for h in state["history"] if h[0] > sent and h[1] == resource]
                    if pending or state["cut"] != cut or state["bookmark"] != bookmark \
                            or state["gone_event"] != gone_event or time.time() >= end:
                        break
                    lock.wait(timeout=max(0.0, min(1.0, end - time.time())))
                now_cut = state["cut"] != cut
                now_gone = state["gone_event"] != gone_event
                now_bookmark = state["bookmark"] != bookmark
                bookmark = state["bookmark"]
                rv = state["rv"]
            if now_cut:
                # Cut the stream: no terminating chunk, the connection dropped.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if now_gone:
                self.chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version: %d" % sent)})
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
            if now_bookmark and bookmarks:
                kind, api = ("Pod", "v1") if resource == "pods" else ("EndpointSlice", "discovery.k8s.io/v1")
                self.chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api,
                                                           "metadata": {"resourceVersion": str(rv)}}})
                sent = max(sent, rv)
            if time.time() >= end:
                break
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def event(self, method, namespace, name):
        try:
            body = json.loads(self.read_body() or b"{}")
        except ValueError as error:
            with lock:
                record_error("event body is not JSON: %s" % error)
            return self.send_json(400, status(400, "BadRequest", "not JSON"))
        with lock:
            if method == "PATCH":
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    record_error("PATCH with Content-Type %r" % self.headers.get("Content-Type"))
                current = state["events"].get(name)
                if current is None:
                    return self.send_json(404, status(404, "NotFound", 'events.events.k8s.io "%s" not found' % name))
                merged = merge_patch(copy.deepcopy(current), body)
            else:
                merged = body
                name = body.get("metadata", {}).get("name")
                if name in state["events"]:
                    return self.send_json(409, status(409, "AlreadyExists", "event %s exists" % name))
        error = validate(merged, "Event %s" % name)
        if error is None:
            error = check_event(merged, namespace)
            if error:
                with lock:
                    record_error("Event %s: %s" % (name, error))
        if error:
            return self.send_json(422, status(422, "Invalid", error))
        with lock:
            merged["metadata"]["resourceVersion"] = next_rv()
            state["events"][name] = merged
            state["event_log"].append([method, name, copy.deepcopy(merged)])
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


def check_event(event, namespace):
    """What the API server's validation of events.k8s.io/v1 adds to the schema."""
    problems = []
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason", "type", "regarding"):
        if not event.get(field):
            problems.append("%s is required" % field)
    if event.get("type") not in ("Normal", "Warning"):
        problems.append("type must be Normal or Warning")
    for field in ("reportingInstance", "action", "reason"):
        if len(event.get(field) or "") > 128:
            problems.append("%s is longer than 128" % field)
    if len((event.get("note") or "").encode()) > 1024:
        problems.append("note is longer than 1 KiB")
    if event.get("metadata", {}).get("namespace") != namespace:
        problems.append("metadata.namespace is not the namespace of the path")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", event.get("metadata", {}).get("name") or ""):
        problems.append("metadata.name is not a DNS subdomain")
    series = event.get("series")
    if series is not None and (series.get("count", 0) < 2 or not series.get("lastObservedTime")):
        problems.append("series needs count >= 2 and lastObservedTime")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.get("eventTime") or ""):
        problems.append("eventTime is not a MicroTime")
    return "; ".join(problems) or None


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
        self.thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        with lock:
            state["cut"] += 1
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
            if self.path == "/events":
                return self.answer(200, {"events": state["events"], "log": state["event_log"]})
            if self.path == "/errors":
                return self.answer(200, {"errors": state["errors"]})
        self.answer(404, {})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = self.path
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
            with lock:
                state["cut"] += 1
                lock.notify_all()
        elif path == "/gone":
            with lock:
                if body.get("how") == "http":
                    state["gone_http"] = True
                    state["cut"] += 1
                else:
                    state["compacted"] = state["rv"]
                    state["gone_event"] += 1
                lock.notify_all()
        elif path == "/bookmark":
            with lock:
                state["bookmark"] += 1
                lock.notify_all()
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
