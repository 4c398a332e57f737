#!/bin/sh
# Creates the meshproxy system user and group from a checkout (CI, development), the way the
# .deb and .rpm do it: systemd-sysusers with packaging/sysusers.d/mesh-harness.conf. Hosts
# without systemd-sysusers (a container without systemd) get the same account from
# groupadd/useradd. Idempotent.
set -eu
conf=$(cd "$(dirname "$0")/.." && pwd)/sysusers.d/mesh-harness.conf
if command -v systemd-sysusers >/dev/null; then
  exec systemd-sysusers "$conf"
fi
getent group meshproxy >/dev/null || groupadd --system meshproxy
getent passwd meshproxy >/dev/null || useradd --system --gid meshproxy --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin --comment "mesh-harness proxy" meshproxy
