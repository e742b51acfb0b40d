#!/usr/bin/env python3
"""The Grafana dashboard is valid JSON, has the panels the README documents, and queries only
metrics vigil exports (as listed in the README's "Metrics"); the alert rules likewise."""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPECTED = [
    "Readiness", "Checks over time (status per check)", "DB connection saturation", "Gateway DB pool saturation",
    "Gateway DB pool connections",
    "Gateway request rate", "Gateway responses by class (share of requests)", "Gateway latency p50 / p95 / p99",
    "Upstream latency percentiles", "JWT secret rotations", "JWT secret fingerprints",
    "CPU against the limit", "Memory against the limit",
    "Fleet panic (replicas holding readiness, per shared check)",
    "Gateway container CPU against its limit", "Gateway container memory against its limit",
    "Gateway container restarts", "Gateway container last termination", "Service endpoints by condition",
    "Kubernetes API up",
    "Blocked queries and the longest lock wait", "Oldest transaction and idle in transaction",
    "Connection limits and the budget across replicas", "Standby and replay lag",
    "PgBouncer clients waiting and the longest wait",
    "Connections by state (watched ports)", "CLOSE_WAIT connections per pod", "Accept queue and listen overflows",
    "Client certificates: days left", "JWKS key rotations",
]
# Series the rules use that come from elsewhere (Prometheus itself, cAdvisor, kube-state-metrics).
EXTERNAL = {"up", "container_cpu_usage_seconds_total", "kube_pod_container_resource_limits"}


def exported() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^(vigil_[a-z0-9_]+)", section, re.M))
    # A histogram exports _bucket, _sum and _count.
    return names | {n + s for n in names for s in ("_bucket", "_sum", "_count")}


def used(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    return set(re.findall(r"\b(vigil_[a-z0-9_]+|up|container_[a-z0-9_]+|kube_[a-z0-9_]+)\b", expr))


def main() -> int:
    path = pathlib.Path(sys.argv[1])
    dash = json.loads(path.read_text())  # raises on invalid JSON
    known = exported() | EXTERNAL
    bad = []
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        bad.append("duplicate panel ids")
    titles = {p["title"] for p in panels}
    bad += [f"no panel {t!r}" for t in EXPECTED if t not in titles]
    for p in panels:
        if not p.get("targets"):
            bad.append(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            bad += [f"panel {p['title']!r}: {m} is not a vigil metric in the README" for m in used(t["expr"]) - known]
    rules = yaml.safe_load((ROOT / "deploy/alerts/vigil-rules.yaml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            bad += [f"alert {r['alert']}: {m} is not a metric in the README" for m in used(r["expr"]) - known]
    print("\n".join(bad) or f"{path}: valid JSON, {len(panels)} panels, every query on exported metrics")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
