#!/bin/sh
# Creates the meshproxy system group and user the harness and the proxy run with (see
# docs/architecture.md: one SPIRE entry with selector unix:gid:<meshproxy gid> covers both,
# and one iptables owner match exempts both from redirection). Idempotent: the .deb/.rpm
# maintainer scripts and CI run it.
set -eu
getent group meshproxy >/dev/null || groupadd --system meshproxy
getent passwd meshproxy >/dev/null || useradd --system --gid meshproxy --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin --comment "mesh-harness proxy" meshproxy
