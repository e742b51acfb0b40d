#!/usr/bin/env bash
# Installs what the tests use for real when it is missing: PostgreSQL (initdb, pg_ctl),
# promtool (Debian's prometheus package), setpriv, procps and iproute2. Debian/Ubuntu, as root or with sudo.
set -euo pipefail
missing=()
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)   # the tests' kill and pgrep
command -v ip >/dev/null 2>&1 || missing+=(iproute2)    # the network namespace of the slowloris test
((${#missing[@]})) || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
