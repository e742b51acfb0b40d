#!/usr/bin/env bash
# Installs what the tests use for real when it is missing: PostgreSQL (initdb, pg_ctl,
# pg_basebackup), PgBouncer (in front of a test cluster), promtool (Debian's prometheus
# package), setpriv, procps, iproute2, curl, and the real gateways of tests/gateway_traffic.rs
# (haproxy, caddy); and from PyPI the real peers nobody here wrote: a gRPC health server
# (grpcio, grpcio-health-checking) and the Kubernetes OpenAPI schema that the fake API
# server's objects are checked against (kubernetes-validate).
# Debian/Ubuntu, as root or with sudo.
set -euo pipefail
missing=()
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)   # the tests run their own on free ports
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)   # the tests' kill and pgrep
command -v ip >/dev/null 2>&1 || missing+=(iproute2)    # the network namespace of the slowloris test
command -v curl >/dev/null 2>&1 || missing+=(curl)      # a request from inside a test's network namespace
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)  # a real gateway: HAProxy 2.6, built with USE_PROMEX
command -v caddy >/dev/null 2>&1 || missing+=(caddy)      # a real gateway: Caddy 2.6, request metrics
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python_packages=(grpcio==1.85.3 grpcio-health-checking==1.85.1 kubernetes-validate==1.37.0)
if ! python3 -c 'import grpc, grpc_health.v1.health, kubernetes_validate' 2>/dev/null; then
  echo "installing from PyPI: ${python_packages[*]}"
  # PIP_* variables: quiet as root, and allowed on a Debian python (PEP 668).
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet \
    --disable-pip-version-check "${python_packages[@]}"
fi
