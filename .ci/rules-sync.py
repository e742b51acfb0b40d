#!/usr/bin/env python3
"""deploy/base/prometheusrule.yaml embeds deploy/alerts/vigil-rules.yaml's groups verbatim.

  python3 .ci/rules-sync.py          check that the two hold the same groups (exit 1 if not)
  python3 .ci/rules-sync.py --write  regenerate the PrometheusRule from the plain rules file
"""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLAIN = ROOT / "deploy/alerts/vigil-rules.yaml"
CRD = ROOT / "deploy/base/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/alerts/vigil-rules.yaml by `python3 .ci/rules-sync.py --write`; do not edit.
# CI checks that the two hold the same groups.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: vigil
  labels:
    app.kubernetes.io/name: vigil
    app.kubernetes.io/part-of: api-gateway
    # Match your Prometheus' ruleSelector (kube-prometheus-stack: release: <helm release>).
    prometheus: k8s
    role: alert-rules
spec:
"""


def render() -> str:
    text = PLAIN.read_text()
    body = text[text.index("groups:"):]
    return HEADER + "".join("  " + line if line.strip() else line for line in body.splitlines(True))


def main() -> int:
    if "--write" in sys.argv[1:]:
        CRD.write_text(render())
        print(f"wrote {CRD.relative_to(ROOT)}")
        return 0
    plain = yaml.safe_load(PLAIN.read_text())["groups"]
    crd = yaml.safe_load(CRD.read_text())
    if crd["spec"]["groups"] != plain:
        print(f"{CRD.relative_to(ROOT)} differs from {PLAIN.relative_to(ROOT)}: run python3 .ci/rules-sync.py --write")
        return 1
    print(f"PrometheusRule groups identical to the plain rules ({sum(len(g['rules']) for g in plain)} rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
