#!/bin/bash
# Runs inside the test VM (Debian 12, systemd as PID 1, no network) at every boot, from
# the 9p share: /mnt/share holds the packages, SPIRE's binaries and an upstream CA, the
# development proxy (test-only, copied to /opt/mesh-ci, never into the package's paths) and
# receives the results. Each check appends "ok|fail<TAB>name<TAB>detail" to
# out/results.tsv and "info<TAB>name<TAB>value" for measurements; vm.test.ts asserts on
# every line. The phase survives the reboots in /var/lib/mesh-ci.
#
# Phase 1: Ansible --check on the fresh machine, the .deb installed, a real SPIRE server
#   (a test unit) and the harness running spire-agent itself (spire.mode managed), start,
#   reload, restart and stop under the unit, then enabled and rebooted.
# Phase 2: back after the reboot (/run/spire from tmpfiles.d); upgrades (one restart; a
#   build that refuses the configuration keeps the old one running), a configuration error
#   (no loop, no rule, outbound TCP works, journalctl -p err), the Ansible role twice
#   (one restart), remove with a broken configuration, purge; then a reboot.
# Phase 3: enrolling from nothing with the Ansible role (package, trust anchors, a SPIRE join
#   token and one entry by group name, the registrar's address and identity): the harness
#   registers with the registrar the host runs over a real kube-apiserver, reached through
#   qemu's restricted user network (vm.test.ts checks the ExternalWorkload there); a second
#   run changes nothing; purged again. Then the .rpm installed, upgraded and erased with
#   rpm's own database.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
S=/mnt/share
OUT=$S/out
R=$OUT/results.tsv
STATE=/var/lib/mesh-ci
# The package's Node.js, and a copy of it in /opt/mesh-ci for the test's own helpers (the
# development proxy, the peer, the checks): they must work while no package is installed.
PKG_NODE=/usr/lib/mesh-harness/node/bin/node
NODE=/opt/mesh-ci/node
TRUST_DOMAIN=root.linkerd.cluster.local
SPIFFE_ID=spiffe://$TRUST_DOMAIN/vm/web
SPIRE_SOCKET=/run/mesh-ci-spire/server.sock
CONFIG=/etc/mesh-harness/config.json
mkdir -p "$STATE" "$OUT"
phase=$(cat "$STATE/phase" 2>/dev/null || echo 1)
echo "guest: phase $phase at $(date -u +%T)"

check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    printf 'ok\t%s\n' "$name" >>"$R"
  else
    printf 'fail\t%s\t%s\n' "$name" "$(printf '%s' "$out" | tail -c 700 | tr '\n\t' '  ')" >>"$R"
  fi
}
info() { printf 'info\t%s\t%s\n' "$1" "$2" >>"$R"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
fail_if() { if "$@"; then return 1; fi; }
# Waits up to $1 seconds (wall clock) for the command after it to succeed.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$end" ] && { "$@"; return 1; }
    sleep 0.5
  done
}
main_pid() { systemctl show -p MainPID --value mesh-harness; }
rules() { iptables-save 2>/dev/null | grep -c MESH_HARNESS_ || true; }
jumps() { iptables-save -t nat 2>/dev/null | grep -c -- '-j MESH_HARNESS_' || true; }
# Under TCG a start with SPIRE takes minutes: what a rollout waits on, with room.
ready() { mesh-harness status --wait --timeout 6m; }
# The journal's position now; starts_since counts the unit's starts after it (systemd's own
# "Started" lines), so restarts are counted from the journal.
cursor() { journalctl -n 1 --show-cursor -q -o cat | sed -n 's/^-- cursor: //p'; }
starts_since() { journalctl -u mesh-harness --after-cursor="$1" -o cat --no-pager | grep -c '^Started mesh-harness' || true; }
# Every line the harness logged is one JSON object with a component, and READY=1 is among them.
structured_logs() {
  journalctl -u mesh-harness -o cat --no-pager | grep '^{' | "$NODE" -e '
    const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    if (!lines.length || !lines.every((l) => typeof l.component === "string" && typeof l.msg === "string") || !lines.some((l) => /READY=1/.test(l.msg))) {
      console.log(JSON.stringify(lines.slice(-3)));
      process.exit(1);
    }'
}
# Changes the configuration file with a JavaScript statement on `c`.
edit_config() { "$NODE" -e "const fs = require('fs'); const c = JSON.parse(fs.readFileSync('$CONFIG', 'utf8')); $1; fs.writeFileSync('$CONFIG', JSON.stringify(c, null, 2) + '\n');"; }

# The configuration: identity from the harness's own spire-agent (managed), the development
# proxy as proxy.binary, the default iptables.onStop (keep).
write_config() {
  cat >"$CONFIG" <<EOF
{
  "workload": { "group": "web", "namespace": "default", "name": "web-vm-1", "ports": [8080] },
  "identity": {
    "spiffeId": "$SPIFFE_ID",
    "serverName": "web.default.vm.cluster.local",
    "trustAnchorsFile": "/etc/mesh-harness/trust-anchors.pem",
    "workloadApiSocket": "unix:///run/spire/agent/api.sock"
  },
  "spire": {
    "mode": "managed",
    "agentBinary": "/opt/mesh-ci/spire-agent",
    "serverAddress": "127.0.0.1",
    "trustBundleFile": "/etc/mesh-harness/trust-anchors.pem",
    "joinTokenFile": "/etc/mesh-harness/join-token"
  },
  "proxy": { "binary": "/opt/mesh-ci/linkerd2-proxy", "destinationAddr": "127.0.0.1:8086", "shutdownGrace": "5s" },
  "iptables": { "ignoreInboundPorts": [22, 4190, 4191$1] },
  "log": { "format": "json" }
}
EOF
}

# A join token for the next attestation of the harness's spire-agent, and the entry that
# gives the harness and the proxy (group meshproxy) the VM's SPIFFE ID under that agent.
join_token() {
  local token
  token=$(/opt/mesh-ci/spire-server token generate -socketPath "$SPIRE_SOCKET" -ttl 7200 | sed -n 's/^Token: //p')
  [ -n "$token" ] || return 1
  /opt/mesh-ci/spire-server entry create -socketPath "$SPIRE_SOCKET" -parentID "spiffe://$TRUST_DOMAIN/spire/agent/join_token/$token" \
    -spiffeID "$SPIFFE_ID" -selector "unix:gid:$(getent group meshproxy | cut -d: -f3)" >/dev/null || return 1
  install -m 0600 /dev/null /etc/mesh-harness/join-token
  printf '%s' "$token" >/etc/mesh-harness/join-token
}

# Outbound TCP to another machine: a network namespace behind a veth pair, so the
# connection leaves through a real interface (what goes through lo is never redirected).
setup_peer() {
  ip netns add mhpeer
  ip link add mhveth0 type veth peer name mhveth1 netns mhpeer
  ip addr add 198.18.0.1/24 dev mhveth0
  ip link set mhveth0 up
  ip netns exec mhpeer ip addr add 198.18.0.2/24 dev mhveth1
  ip netns exec mhpeer ip link set mhveth1 up
  ip netns exec mhpeer ip link set lo up
  # Not holding the check's output pipe, or the check would wait for it to end.
  ip netns exec mhpeer "$NODE" -e "require('net').createServer((s) => s.end('peer\n')).listen(9999, '198.18.0.2')" >/dev/null 2>&1 &
  wait_for 60 bash -c '[ "$(ip netns exec mhpeer bash -c outbound)" = peer ]'
}
# What a root process connecting to the peer gets back: "peer" directly, the development
# proxy's answer through the mesh, or the error.
outbound() {
  "$NODE" -e "setTimeout(() => { console.log('timeout'); process.exit(1); }, 10000); const s = require('net').connect(9999, '198.18.0.2'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => { console.log(d.trim()); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(1); });"
}
# The admin API's /ready, without the program (a version that refuses the file cannot read its admin port).
admin_ready() { "$NODE" -e "fetch('http://127.0.0.1:4192/ready').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"; }
outbound_reaches_peer() { [ "$(outbound)" = peer ]; }
outbound_answered() { local a; a=$(outbound) && [ -n "$a" ]; }
# A restart that must fail at once with a configuration error, and stay failed.
failed_without_loop() {
  sleep 10
  [ "$(systemctl show -p ActiveState --value mesh-harness)" = failed ] &&
    [ "$(systemctl show -p ExecMainStatus --value mesh-harness)" = 78 ] &&
    [ "$(systemctl show -p NRestarts --value mesh-harness)" = 0 ] ||
    { systemctl show -p ActiveState -p ExecMainStatus -p NRestarts mesh-harness; return 1; }
}

# The example playbook (deploy/ansible/playbook.yml) against this machine, with this test's
# variables: the package file, the configuration, and for enrolling the registrar's address
# and identity and a join token (empty: none, whatever the example playbook names). The
# guest runs as root and has no sudo: no become.
ansible_vars() {
  cat >/root/ansible/vars.json <<EOF
{
  "ansible_become": false,
  "mesh_harness_ready_timeout": 600,
  "mesh_harness_package_file": "$1",
  "mesh_harness_trust_anchors": $(python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' /mnt/share/spire/upstream.pem),
  "mesh_harness_registrar_address": "${3:-}",
  "mesh_harness_registrar_identity": "${4:-}",
  "mesh_harness_spire_join_token": "${5:-}",
  "mesh_harness_proxy_archive_file": "${6:-}",
  "mesh_harness_config": $2
}
EOF
}
# The enrollment's configuration: no join token, trust anchors file or registrar in it (the
# role's own variables set those).
enroll_config() {
  cat <<EOF
{
  "workload": { "group": "web", "namespace": "$(cat "$S/registrar-namespace")", "ips": ["$VM_IP"], "ports": [8080] },
  "identity": { "spiffeId": "$SPIFFE_ID", "serverName": "web.default.vm.cluster.local", "workloadApiSocket": "unix:///run/spire/agent/api.sock" },
  "spire": { "agentBinary": "/opt/mesh-ci/spire-agent", "serverAddress": "127.0.0.1", "trustBundleFile": "/etc/mesh-harness/trust-anchors.pem" },
  "proxy": { "binary": "/usr/lib/linkerd/linkerd2-proxy", "destinationAddr": "127.0.0.1:8086", "shutdownGrace": "5s" },
  "log": { "format": "json" }
}
EOF
}
# qemu's user network, restricted: the guest reaches nothing but the address vm.test.ts
# forwards to the registrar on the host.
VM_IP=10.0.2.15
enroll_network() {
  local nic
  nic=$(ip -o link show | awk -F': ' '$2 != "lo" { print $2; exit }')
  [ -n "$nic" ] || { ip -o link show; return 1; }
  ip link set "$nic" up && ip addr replace "$VM_IP/24" dev "$nic"
}
# A join token, and one entry for every machine of the group: by group name, which is the
# same on every host (a gid is not), made before the package creates the account.
enroll_token() {
  local token
  token=$(/opt/mesh-ci/spire-server token generate -socketPath "$SPIRE_SOCKET" -ttl 7200 | sed -n 's/^Token: //p')
  [ -n "$token" ] || return 1
  /opt/mesh-ci/spire-server entry create -socketPath "$SPIRE_SOCKET" -parentID "spiffe://$TRUST_DOMAIN/spire/agent/join_token/$token" \
    -spiffeID "$SPIFFE_ID" -selector unix:group:meshproxy >/dev/null || return 1
  printf '%s' "$token"
}
# The harness's /status: the registration is ready and names the workload the registrar made.
registered() {
  mesh-harness status --json | "$NODE" -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const r = s.components.find((c) => c.name === "registration");
    if (!r || r.phase !== "Ready" || !r.detail || !r.detail.workloadName) { console.log(JSON.stringify(r)); process.exit(1); }
    console.log(r.detail.workloadName);'
}

ansible_run() {
  ANSIBLE_ROLES_PATH=/root/ansible/roles ANSIBLE_NOCOLOR=1 ansible-playbook -i /root/ansible/inventory "$@" /root/ansible/playbook.yml -e @/root/ansible/vars.json
}

# The checks run their commands in `bash -c`: they see these helpers and paths.
export NODE CONFIG SPIRE_SOCKET
export -f main_pid rules jumps ready cursor starts_since outbound outbound_reaches_peer outbound_answered admin_ready registered

if [ "$phase" = 1 ]; then
  : >"$R"
  cp "$S"/mesh-harness_*.deb "$S"/mesh-harness-*.rpm /root/
  base_deb=/root/$(cat "$S/base-deb")

  # The role in check mode on a machine that has nothing yet: it passes and changes nothing.
  cp -r "$S/ansible" /root/ansible
  printf '[mesh_vms]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n' >/root/ansible/inventory
  mkdir -p /root/ansible/files
  ansible_vars "$base_deb" '{"identity": {"spiffeId": "'"$SPIFFE_ID"'", "serverName": "web.default.vm.cluster.local"}, "proxy": {"destinationAddr": "127.0.0.1:8086"}}'
  t0=$(now)
  ansible_run --check >"$OUT/ansible-check.log" 2>&1
  rc=$?
  info "ansible --check seconds" "$(elapsed "$t0" "$(now)")"
  check "ansible --check on a fresh machine succeeds" bash -c "[ $rc = 0 ] || { tail -n 30 '$OUT/ansible-check.log'; exit 1; }"
  check "ansible --check changed nothing" bash -c '! dpkg -s mesh-harness >/dev/null 2>&1 && [ ! -e /etc/mesh-harness ] && [ ! -e /var/cache/mesh-harness-'"$(basename "$base_deb")"' ]'

  t0=$(now)
  check "apt installs the .deb offline" apt-get install -y "$base_deb"
  info "apt install seconds" "$(elapsed "$t0" "$(now)")"
  # The guest has no Node.js of its own: the version line names the embedded runtime.
  mkdir -p /opt/mesh-ci && cp "$PKG_NODE" "$NODE"
  check "mesh-harness version runs on the embedded, pinned Node.js" bash -c "! command -v node && mesh-harness version | grep -F 'mesh-harness 0.1.0 (node $(cat "$S/node-version"))'"
  check "the packaged --help offers no playground" bash -c 'mesh-harness --help | grep -q "^  run " && ! mesh-harness --help | grep -qw demo'
  check "meshproxy user and group exist (sysusers.d)" bash -c 'getent group meshproxy && getent passwd meshproxy | grep -q ":/nonexistent:/usr/sbin/nologin$"'
  check "files, owners and modes" bash -c '
    [ "$(stat -c %a:%U:%G /usr/bin/mesh-harness)" = 755:root:root ] &&
    [ "$(stat -c %a:%U:%G /etc/mesh-harness/config.json)" = 644:root:root ] &&
    [ "$(stat -c %a /usr/lib/mesh-harness/node/bin/node)" = 755 ] &&
    [ -f /lib/systemd/system/mesh-harness.service ] &&
    [ -f /usr/lib/sysusers.d/mesh-harness.conf ] && [ -f /usr/lib/tmpfiles.d/mesh-harness.conf ] &&
    [ -f /usr/share/doc/mesh-harness/copyright ] && [ -f /usr/share/doc/mesh-harness/changelog.gz ] &&
    ! find /usr/lib/mesh-harness -name "dev-*" -o -name "demo-*" -o -name "*.map" | grep . &&
    [ "$(find /usr/lib/mesh-harness -name "*.node" | wc -l)" = 1 ]'
  check "installing created /run/spire (tmpfiles.d)" test -d /run/spire
  check "config.json is a conffile" bash -c "dpkg-query -W -f='\${Conffiles}' mesh-harness | grep -q '/etc/mesh-harness/config.json'"
  check "installing neither enables nor starts the service" bash -c '[ "$(systemctl is-enabled mesh-harness)" = disabled ] && ! systemctl is-active --quiet mesh-harness'
  check "systemd-analyze verify is clean" bash -c 'out=$(systemd-analyze verify mesh-harness.service 2>&1); [ -z "$out" ] || { echo "$out"; exit 1; }'
  info "exposure score" "$(systemd-analyze security mesh-harness.service 2>&1 | sed -n 's/.*Overall exposure level for mesh-harness.service: \([0-9.]*\).*/\1/p')"
  info "installed size KiB" "$(dpkg-query -W -f='${Installed-Size}' mesh-harness)"

  # The test-only pieces: a SPIRE server (a unit of its own, so it comes back after the
  # reboot; its keys and datastore on disk), spire-agent for the harness to run, and the
  # development proxy as proxy.binary.
  mkdir -p /etc/mesh-ci "$STATE/spire"
  cp -r "$S/app" /opt/mesh-ci/app
  ln -s /usr/lib/mesh-harness/node_modules /opt/mesh-ci/app/node_modules
  printf '#!/bin/sh\nexec %s /opt/mesh-ci/app/dist/dev-proxy.js "$@"\n' "$NODE" >/opt/mesh-ci/linkerd2-proxy
  cp "$S/bin/spire-server" "$S/bin/spire-agent" /opt/mesh-ci/
  chmod -R a+rX /opt/mesh-ci
  chmod 755 /opt/mesh-ci/linkerd2-proxy /opt/mesh-ci/spire-server /opt/mesh-ci/spire-agent
  install -m 0644 "$S/spire/upstream.pem" /etc/mesh-ci/upstream.pem
  install -m 0600 "$S/spire/upstream.key" /etc/mesh-ci/upstream.key
  cat >/etc/mesh-ci/spire-server.conf <<EOF
server {
  bind_address = "127.0.0.1"
  bind_port = "8081"
  socket_path = "$SPIRE_SOCKET"
  trust_domain = "$TRUST_DOMAIN"
  data_dir = "$STATE/spire/data"
  log_level = "WARN"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$STATE/spire/datastore.sqlite3"
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "$STATE/spire/keys.json"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path = "/etc/mesh-ci/upstream.pem"
      key_file_path = "/etc/mesh-ci/upstream.key"
    }
  }
}
EOF
  cat >/etc/systemd/system/mesh-ci-spire-server.service <<EOF
[Unit]
Description=SPIRE server (test only)
Before=mesh-harness.service
[Service]
ExecStart=/opt/mesh-ci/spire-server run -config /etc/mesh-ci/spire-server.conf
RuntimeDirectory=mesh-ci-spire
[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl enable --now mesh-ci-spire-server.service
  check "the SPIRE server is healthy" wait_for 300 /opt/mesh-ci/spire-server healthcheck -socketPath "$SPIRE_SOCKET"
  install -m 0644 /etc/mesh-ci/upstream.pem /etc/mesh-harness/trust-anchors.pem
  check "a join token and the registration entry for the harness's agent" join_token
  write_config ""

  t0=$(now)
  systemctl start mesh-harness
  start_rc=$?
  t1=$(now)
  info "systemctl start to active seconds" "$(elapsed "$t0" "$t1")"
  check "systemctl start succeeds" test "$start_rc" = 0
  check "the harness is meshed with the SVID from its own spire-agent" ready
  info "systemctl start to meshed seconds" "$(elapsed "$t0" "$(now)")"
  journalctl -u mesh-harness --no-pager -o cat >"$OUT/journal-start.log" 2>&1
  check "systemctl status shows the STATUS= text" bash -c 'systemctl status mesh-harness --no-pager | grep -E "^ +Status: \"[^\"]+\""'
  check "the proxy runs as meshproxy and spire-agent as root, both under the harness" bash -c 'ps -o user:32=,args= --ppid "$(systemctl show -p MainPID --value mesh-harness)" >/tmp/children; grep -q "^meshproxy  *" /tmp/children && grep -q "^root  *.*spire-agent run" /tmp/children || { ps -eo pid,ppid,user,args; exit 1; }'
  check "the managed agent serves its socket under /run/spire and keeps its state in the state directory" bash -c 'test -S /run/spire/agent/api.sock && test -n "$(ls -A /var/lib/mesh-harness/spire-agent)"'
  check "the embedded Node.js keeps its compiled code in the unit's cache directory" bash -c '[ "$(stat -c %a:%U /var/cache/mesh-harness)" = 700:root ] && [ -n "$(find /var/cache/mesh-harness/node-compile-cache -type f | head -1)" ]'
  check "the redirect rules are in place" bash -c '[ "$(jumps)" -gt 0 ]'
  check "journald holds the structured (JSON) logs" structured_logs
  check "the watchdog is armed" bash -c '[ "$(systemctl show -p WatchdogUSec --value mesh-harness)" = 30s ] && a=$(systemctl show -p WatchdogTimestampMonotonic --value mesh-harness) && sleep 25 && b=$(systemctl show -p WatchdogTimestampMonotonic --value mesh-harness) && [ "$a" != 0 ] && [ "$b" -gt "$a" ]'

  pid=$(main_pid)
  write_config ", 9999"
  check "systemctl reload applies a change in place" bash -c "systemctl reload mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" = $pid ] && for i in \$(seq 60); do iptables-save -t nat | grep -qE -- '--dports [0-9,]*,9999 ' && exit 0; sleep 1; done; journalctl -u mesh-harness -n 5 --no-pager; exit 1"

  # onStop keep (the default): a clean restart leaves the rules to the next start, a stop
  # for good removes them (the unit's ExecStopPost), since no proxy would run.
  c=$(cursor)
  systemctl restart mesh-harness
  check "a clean restart leaves the rules to the next start (ExecStopPost)" bash -c "journalctl -u mesh-harness --after-cursor='$c' -o cat --no-pager | grep -q 'redirect rules left for the next start: mesh-harness.service stopped cleanly and is being restarted'"
  check "meshed again after the restart" ready

  c=$(cursor)
  t0=$(now)
  systemctl stop mesh-harness
  info "systemctl stop seconds" "$(elapsed "$t0" "$(now)")"
  check "systemctl stop drains: the proxy exits on SIGTERM, clean result" bash -c "
    [ \"\$(systemctl show -p Result --value mesh-harness)\" = success ] &&
    journalctl -u mesh-harness --after-cursor='$c' -o cat --no-pager | grep '\"event\":\"child-exited\"' | grep '\"requested\":true' | grep -v SIGKILL | grep -q '\"component\":\"proxy\"'"
  check "a stop with onStop=keep leaves no rule: the unit removed them, no proxy runs" bash -c "[ \"\$(rules)\" = 0 ] && journalctl -u mesh-harness --after-cursor='$c' -o cat --no-pager | grep -q 'removing the redirect rules: mesh-harness.service stopped and is not being restarted'"

  systemctl enable mesh-harness
  systemctl start mesh-harness
  check "enabled and meshed before the reboot" ready
  echo 2 >"$STATE/phase"
  sync
  echo "guest: rebooting"
  exit 0
fi

if [ "$phase" = 2 ]; then
  # /run is a tmpfs: /run/spire comes from tmpfiles.d, or the managed agent could not
  # create its socket under ProtectSystem=strict.
  check "the enabled service is back after the reboot" wait_for 300 systemctl is-active mesh-harness
  info "boot to mesh-harness active seconds" "$(awk '{ print $1 }' /proc/uptime)"
  check "after the reboot the managed spire-agent serves again and the harness is meshed" bash -c 'ready && test -d /run/spire && test -S /run/spire/agent/api.sock'
  info "boot to meshed seconds" "$(awk '{ print $1 }' /proc/uptime)"
  check "a network namespace to send outbound TCP to" setup_peer
  cp "$CONFIG" /root/good.json

  # Upgrade with a modified conffile, service running: exactly one restart.
  sed -i 's/"format": "json"/"format": "json", "level": "debug"/' "$CONFIG"
  cp "$CONFIG" /root/modified.json
  old_pid=$(main_pid)
  c=$(cursor)
  t0=$(now)
  check "apt upgrades to the newer build" apt-get install -y "/root/$(cat "$S/upgrade-deb")"
  info "apt upgrade seconds" "$(elapsed "$t0" "$(now)")"
  check "the upgrade kept the modified config" cmp "$CONFIG" /root/modified.json
  check "the upgrade restarted the running service, once" bash -c "systemctl is-active --quiet mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" != $old_pid ] && dpkg-query -W -f='\${Version}' mesh-harness | grep -q systest1 && [ \"\$(starts_since '$c')\" = 1 ]"
  check "meshed on the new version" ready

  # A configuration with an unknown key (what a downgrade meets), then a restart.
  edit_config 'c.iptables.futureSetting = true'
  c=$(cursor)
  systemctl restart mesh-harness
  check "restart with an unknown key: the service fails with 78 and systemd does not restart it" failed_without_loop
  check "no MESH_HARNESS jump remains after the failed start" bash -c '[ "$(jumps)" = 0 ] || iptables-save -t nat'
  check "outbound TCP works after the failed start" outbound_reaches_peer
  check "journalctl -p err -u mesh-harness shows the configuration error" bash -c "journalctl -u mesh-harness -p err --after-cursor='$c' -o cat --no-pager | grep -F 'iptables.futureSetting: got true; unknown key'"
  check "journalctl -p err holds no info line" bash -c "! journalctl -u mesh-harness -p err -o cat --no-pager | grep -F '\"msg\":\"mesh-harness starting\"'"
  check "info lines are still in the journal, at their priority" bash -c "journalctl -u mesh-harness -p info -o cat --no-pager | grep -qF '\"msg\":\"mesh-harness starting\"'"
  # The check above can fail: jumps with no proxy behind them do cut outbound TCP off.
  check "(the outbound check sees a cut-off: jumps with no proxy refuse it)" bash -c 'mesh-harness iptables apply --config /root/good.json >/dev/null && ! outbound_reaches_peer; r=$?; mesh-harness iptables clean >/dev/null; exit $r'
  cp /root/good.json "$CONFIG"
  systemctl reset-failed mesh-harness
  systemctl start mesh-harness
  check "fixed, it starts and meshes again" ready

  # An upgrade to a build that refuses the configuration (vm.test.ts renamed
  # proxy.shutdownGrace in its schema): the running version stays, and postinst says why.
  old_pid=$(main_pid)
  c=$(cursor)
  apt-get install -y "/root/$(cat "$S/strict-deb")" >"$OUT/apt-strict.log" 2>&1
  rc=$?
  check "apt installs a build that refuses the configuration" bash -c "[ $rc = 0 ] || { tail -n 20 '$OUT/apt-strict.log'; exit 1; }"
  check "its postinst says why it did not restart and what to fix" bash -c "grep -F 'not restarting mesh-harness.service: this version refuses its configuration' '$OUT/apt-strict.log' && grep -F 'proxy.shutdownGrace' '$OUT/apt-strict.log' && grep -F 'mesh-harness config validate' '$OUT/apt-strict.log'"
  check "the service keeps running the version it started with" bash -c "systemctl is-active --quiet mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" = $old_pid ] && [ \"\$(starts_since '$c')\" = 0 ] && admin_ready"
  check "the VM keeps its connectivity (through the proxy)" outbound_answered
  c=$(cursor)
  systemctl restart mesh-harness
  check "a restart on the refusing version fails once, without a loop" failed_without_loop
  check "and leaves no jump, and outbound TCP works" bash -c '[ "$(jumps)" = 0 ] && outbound_reaches_peer'
  check "apt downgrades to the build that accepts the configuration" apt-get install -y --allow-downgrades "/root/$(cat "$S/upgrade-deb")"
  systemctl reset-failed mesh-harness
  systemctl start mesh-harness
  check "meshed again after the downgrade" ready

  # The Ansible role (the example playbook) twice: an upgrade with a new configuration
  # file, then nothing to do. Exactly one restart, counted from the journal.
  ansible_vars "/root/$(cat "$S/ansible-deb")" "$(cat /root/good.json)"
  declare -a starts
  for run in 1 2; do
    c=$(cursor)
    t0=$(now)
    ansible_run >"$OUT/ansible-$run.log" 2>&1
    rc=$?
    info "ansible run $run seconds" "$(elapsed "$t0" "$(now)")"
    check "ansible run $run succeeds" bash -c "[ $rc = 0 ] || { tail -n 30 '$OUT/ansible-$run.log'; exit 1; }"
    starts[$run]=$(starts_since "$c")
    info "ansible run $run restarts" "${starts[$run]}"
  done
  check "ansible: the first run upgraded and restarted exactly once, then waited for ready" bash -c "[ '${starts[1]}' = 1 ] && grep -q 'changed=[1-9]' '$OUT/ansible-1.log' && grep -q 'RUNNING HANDLER \[mesh_harness : Restart mesh-harness\]' '$OUT/ansible-1.log' && grep -q 'RUNNING HANDLER \[mesh_harness : Wait until mesh-harness is ready\]' '$OUT/ansible-1.log' && dpkg-query -W -f='\${Version}' mesh-harness | grep -q systest3"
  check "ansible: the second run changes nothing and restarts nothing" bash -c "[ '${starts[2]}' = 0 ] && grep -q 'localhost *: ok=[0-9]* *changed=0 .*failed=0' '$OUT/ansible-2.log'"
  check "the service is meshed after the role" ready

  # Remove with a configuration no version accepts, the rules in place.
  check "the rules are in place before the removal" bash -c '[ "$(jumps)" -gt 0 ]'
  edit_config 'c.futureSection = {}'
  rm -f /var/cache/mesh-harness-*.deb
  check "apt remove succeeds" apt-get remove -y mesh-harness
  check "remove stopped the service and removed the program" bash -c '! systemctl is-active --quiet mesh-harness && [ ! -e /usr/lib/mesh-harness ] && [ ! -e /usr/bin/mesh-harness ] && [ ! -e /lib/systemd/system/mesh-harness.service ]'
  check "remove with a broken configuration left no rules" test "$(rules)" = 0
  check "outbound TCP works after the removal" outbound_reaches_peer
  check "remove kept the configuration and the state" bash -c 'test -f /etc/mesh-harness/config.json && test -d /var/lib/mesh-harness/spire-agent'
  check "apt purge succeeds" apt-get purge -y mesh-harness
  check "purge left no files" bash -c 'found=$(find / -xdev \( -path /mnt -o -path /opt/mesh-ci -o -path /root -o -path /var/log/journal -o -path /var/lib/mesh-ci \) -prune -o -name "*mesh-harness*" -print); [ -z "$found" ] || { echo "$found"; exit 1; }'
  check "purge left no user and no group" bash -c '! getent passwd meshproxy && ! getent group meshproxy'
  check "purge left no rules" test "$(rules)" = 0
  check "dpkg has forgotten the package" fail_if dpkg -s mesh-harness
  echo 3 >"$STATE/phase"
  sync
  echo "guest: rebooting"
  exit 0
fi

if [ "$phase" = 3 ]; then
  # The .rpm in this machine, with rpm's own database where RPM distributions keep it
  # (Debian's rpm asks for --force-debian; --nodeps: iptables and systemd are dpkg's here).
  rpmdb() { rpm --dbpath /var/lib/rpm "$@"; }
  rpmdb --initdb
  check "the SPIRE server is back" wait_for 300 /opt/mesh-ci/spire-server healthcheck -socketPath "$SPIRE_SOCKET"

  # Enrolling a machine that has no mesh-harness (phase 2 purged it) with the role alone.
  check "enroll: the network to the host's registrar" enroll_network
  token=$(enroll_token)
  check "enroll: a join token and one entry by group name (unix:group:meshproxy), before the account exists" bash -c "[ -n '$token' ] && ! getent group meshproxy"
  ansible_vars "/root/$(cat "$S/base-deb")" "$(enroll_config)" "$(cat "$S/registrar-address")" "$(cat "$S/registrar-identity")" "$token" "$S/proxy/linkerd2-proxy.oci.tar"
  enroll_run() {
    local t0 rc
    t0=$(now)
    ansible_run >"$OUT/enroll-$1.log" 2>&1
    rc=$?
    info "enroll: ansible run $1 seconds" "$(elapsed "$t0" "$(now)")"
    [ $rc = 0 ] || { tail -n 30 "$OUT/enroll-$1.log"; return 1; }
  }
  check "enroll: the first ansible run succeeds" enroll_run 1
  check "enroll: the harness is ready and registered after the first run" bash -c 'ready && registered'
  check "enroll: the role installed linkerd2-proxy from the image archive, recorded" bash -c "/usr/bin/mesh-harness version --json | python3 -c 'import json, sys; p = json.load(sys.stdin)[\"proxy\"]; assert p[\"path\"] == \"/usr/lib/linkerd/linkerd2-proxy\" and p[\"install\"][\"state\"] == \"recorded\" and p[\"install\"][\"version\"] == \"vm-test\", p'"
  check "enroll: the second ansible run succeeds" enroll_run 2
  check "enroll: the second run changes nothing" bash -c "grep -q 'localhost *: ok=[0-9]* *changed=0 .*failed=0' '$OUT/enroll-2.log' || { tail -n 30 '$OUT/enroll-2.log'; exit 1; }"
  check "enroll: the join token file is root's alone" bash -c '[ "$(stat -c %a:%U /etc/mesh-harness/join-token)" = 600:root ]'
  registered >"$OUT/enrolled-workload" 2>&1
  check "enroll: purge returns the machine to nothing" bash -c 'apt-get purge -y mesh-harness >/dev/null && rm -rf /etc/mesh-harness /var/lib/mesh-harness && [ "$(rules)" = 0 ]'
  check "rpm installs the .rpm, its scriptlets run" rpmdb -i --nodeps --force-debian "/root/$(cat "$S/base-rpm")"
  check "rpm's database has it" rpmdb -q mesh-harness
  check "%pre made the meshproxy account from sysusers.d" bash -c 'getent group meshproxy && getent passwd meshproxy | grep -q ":/nonexistent:/usr/sbin/nologin$"'
  check "installing neither enables nor starts the service (rpm)" bash -c '[ "$(systemctl is-enabled mesh-harness)" = disabled ] && ! systemctl is-active --quiet mesh-harness && test -d /run/spire'
  install -m 0644 /etc/mesh-ci/upstream.pem /etc/mesh-harness/trust-anchors.pem
  # The purge removed the agent's state: it attests again, with a new token.
  check "a new join token for the new agent" join_token
  write_config ""
  systemctl start mesh-harness
  check "the rpm's service starts and meshes" ready
  old_pid=$(main_pid)
  c=$(cursor)
  check "rpm upgrades to the newer build" rpmdb -U --nodeps --force-debian "/root/$(cat "$S/upgrade-rpm")"
  check "the rpm upgrade restarted the running service once (%posttrans)" bash -c "systemctl is-active --quiet mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" != $old_pid ] && [ \"\$(starts_since '$c')\" = 1 ] && rpm --dbpath /var/lib/rpm -q mesh-harness | grep -q systest1"
  check "meshed on the upgraded rpm" ready
  check "the rules are in place before the erase" bash -c '[ "$(jumps)" -gt 0 ]'
  sed -i 's/"format": "json"/"format": "json", "level": "debug"/' "$CONFIG"
  check "rpm -e succeeds" rpmdb -e --nodeps mesh-harness
  check "erase stopped the service, removed the program and every rule" bash -c '! systemctl is-active --quiet mesh-harness && [ ! -e /usr/lib/mesh-harness ] && [ ! -e /usr/bin/mesh-harness ] && [ "$(rules)" = 0 ]'
  check "erase kept the state, like Debian's remove" test -n "$(ls -A /var/lib/mesh-harness/spire-agent 2>/dev/null)"
  check "erase kept the changed configuration as .rpmsave, and the account" bash -c 'test -f /etc/mesh-harness/config.json.rpmsave && getent passwd meshproxy'
  check "erase removed the compiled-code cache" test ! -e /var/cache/mesh-harness
  echo 4 >"$STATE/phase"
  echo done >"$OUT/done"
  sync
fi
