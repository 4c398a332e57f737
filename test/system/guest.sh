#!/bin/bash
# Runs inside the test VM (Debian 12, systemd as PID 1, no network) at every boot, from
# the 9p share: /mnt/share holds the packages, the development Workload API and proxy
# (test-only, copied to /opt/mesh-ci, never into the package's paths) and receives the
# results. Each check appends "ok|fail<TAB>name<TAB>detail" to out/results.tsv and
# "info<TAB>name<TAB>value" for measurements; vm.test.ts asserts on every line. The
# phase survives the reboot in /var/lib/mesh-ci.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
S=/mnt/share
OUT=$S/out
R=$OUT/results.tsv
STATE=/var/lib/mesh-ci
NODE=/usr/lib/mesh-harness/node/bin/node
SPIFFE_ID=spiffe://root.linkerd.cluster.local/vm/web
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
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local limit=$1 i=0
  shift
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -ge "$((limit * 2))" ] && { "$@"; return 1; }
    sleep 0.5
  done
}
admin() { "$NODE" -e "fetch('http://127.0.0.1:4192$1').then(async (r) => { const b = await r.text(); console.log(b); process.exit(r.status === 200 ? 0 : 1); }, (e) => { console.log(e.message); process.exit(1); })"; }
main_pid() { systemctl show -p MainPID --value mesh-harness; }
rules() { iptables-save 2>/dev/null | grep -c MESH_HARNESS_ || true; }
ready_now() { systemctl is-active --quiet mesh-harness && admin /ready; }
# Every line the harness logged is one JSON object with a component, and READY=1 is among them.
structured_logs() {
  journalctl -u mesh-harness -o cat --no-pager | grep '^{' | "$NODE" -e '
    const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    if (!lines.length || !lines.every((l) => typeof l.component === "string" && typeof l.msg === "string") || !lines.some((l) => /READY=1/.test(l.msg))) {
      console.log(JSON.stringify(lines.slice(-3)));
      process.exit(1);
    }'
}
write_config() {
  cat >/etc/mesh-harness/config.json <<EOF
{
  "workload": { "group": "web", "namespace": "default", "name": "web-vm-1", "ports": [8080] },
  "identity": {
    "spiffeId": "$SPIFFE_ID",
    "serverName": "web.default.vm.cluster.local",
    "trustAnchorsFile": "/etc/mesh-harness/trust-anchors.pem",
    "workloadApiSocket": "unix:///run/spire/agent/api.sock"
  },
  "proxy": { "binary": "/opt/mesh-ci/linkerd2-proxy", "destinationAddr": "127.0.0.1:8086", "shutdownGrace": "5s" },
  "iptables": { "onStop": "clean", "ignoreInboundPorts": [22, 4190, 4191$1] },
  "log": { "format": "json" }
}
EOF
}

if [ "$phase" = 1 ]; then
  : >"$R"
  cp "$S"/mesh-harness_*.deb /root/
  base_deb=$(ls /root/mesh-harness_*_amd64.deb | grep -v systest | head -n 1)

  t0=$(now)
  check "apt installs the .deb offline" apt-get install -y "$base_deb"
  info "apt install seconds" "$(elapsed "$t0" "$(now)")"
  # The guest has no Node.js of its own: the version line names the embedded runtime.
  check "mesh-harness version runs on the embedded, pinned Node.js" sh -c "! command -v node && mesh-harness version | grep -F 'mesh-harness 0.1.0 (node $(cat "$S/node-version"))'"
  check "meshproxy user and group exist" sh -c 'getent group meshproxy && getent passwd meshproxy | grep -q ":/nonexistent:/usr/sbin/nologin$"'
  check "files, owners and modes" sh -c '
    [ "$(stat -c %a:%U:%G /usr/bin/mesh-harness)" = 755:root:root ] &&
    [ "$(stat -c %a:%U:%G /etc/mesh-harness/config.json)" = 644:root:root ] &&
    [ "$(stat -c %a /usr/lib/mesh-harness/node/bin/node)" = 755 ] &&
    [ -f /lib/systemd/system/mesh-harness.service ] &&
    [ -f /usr/share/doc/mesh-harness/copyright ] && [ -f /usr/share/doc/mesh-harness/changelog.gz ] &&
    ! find /usr/lib/mesh-harness -name "dev-*" | grep . &&
    [ "$(find /usr/lib/mesh-harness -name "*.node" | wc -l)" = 1 ]'
  check "config.json is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' mesh-harness | grep -q '/etc/mesh-harness/config.json'"
  check "installing neither enables nor starts the service" sh -c '[ "$(systemctl is-enabled mesh-harness)" = disabled ] && ! systemctl is-active --quiet mesh-harness'
  check "systemd-analyze verify is clean" sh -c 'out=$(systemd-analyze verify mesh-harness.service 2>&1); [ -z "$out" ] || { echo "$out"; exit 1; }'
  info "exposure score" "$(systemd-analyze security mesh-harness.service 2>&1 | sed -n 's/.*Overall exposure level for mesh-harness.service: \([0-9.]*\).*/\1/p')"

  # The test-only stand-ins: the development Workload API (a unit of its own, so it also
  # comes back after the reboot) and the development proxy as proxy.binary.
  mkdir -p /opt/mesh-ci
  cp -r "$S/app" /opt/mesh-ci/app
  ln -s /usr/lib/mesh-harness/node_modules /opt/mesh-ci/app/node_modules
  printf '#!/bin/sh\nexec %s /opt/mesh-ci/app/dist/dev-proxy.js "$@"\n' "$NODE" >/opt/mesh-ci/linkerd2-proxy
  chmod -R a+rX /opt/mesh-ci
  chmod 755 /opt/mesh-ci/linkerd2-proxy
  cat >/etc/systemd/system/mesh-ci-wlapi.service <<EOF
[Unit]
Description=development Workload API (test only)
Before=mesh-harness.service
[Service]
ExecStart=$NODE /opt/mesh-ci/app/dist/dev-workload-api.js --socket /run/spire/agent/api.sock --spiffe-id $SPIFFE_ID --ttl 30m --trust-anchors-out /etc/mesh-harness/trust-anchors.pem --log-level warn
[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl enable --now mesh-ci-wlapi.service
  check "development Workload API serving" wait_for 120 test -S /run/spire/agent/api.sock -a -s /etc/mesh-harness/trust-anchors.pem
  write_config ""

  t0=$(now)
  systemctl start mesh-harness
  start_rc=$?
  t1=$(now)
  info "systemctl start to active seconds" "$(elapsed "$t0" "$t1")"
  check "systemctl start succeeds" test "$start_rc" = 0
  journalctl -u mesh-harness --no-pager -o cat >"$OUT/journal-start.log" 2>&1
  # Type=notify: start returned, so READY=1 arrived; /ready must already say so.
  check "systemctl start returns only once READY=1 was sent" ready_now
  check "systemctl status shows the STATUS= text" sh -c 'systemctl status mesh-harness --no-pager | grep -E "^ +Status: \"[^\"]+\""'
  check "the proxy runs as meshproxy under the harness" sh -c 'ps -o user= --ppid "$(systemctl show -p MainPID --value mesh-harness)" | grep -qx meshproxy || { ps -eo pid,ppid,user,args; exit 1; }'
  check "the embedded Node.js keeps its compiled code in the unit's cache directory" sh -c '[ "$(stat -c %a:%U /var/cache/mesh-harness)" = 700:root ] && [ -n "$(find /var/cache/mesh-harness/node-compile-cache -type f | head -1)" ]'
  check "the redirect rules are in place" sh -c '[ "$(iptables-save -t nat | grep -c MESH_HARNESS_)" -gt 2 ]'
  check "journald holds the structured (JSON) logs" structured_logs
  check "the watchdog is armed" sh -c '[ "$(systemctl show -p WatchdogUSec --value mesh-harness)" = 30s ] && a=$(systemctl show -p WatchdogTimestampMonotonic --value mesh-harness) && sleep 25 && b=$(systemctl show -p WatchdogTimestampMonotonic --value mesh-harness) && [ "$a" != 0 ] && [ "$b" -gt "$a" ]'

  pid=$(main_pid)
  write_config ", 9999"
  check "systemctl reload applies a change in place" sh -c "systemctl reload mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" = $pid ] && for i in \$(seq 60); do iptables-save -t nat | grep -qE -- '--dports [0-9,]*,9999 ' && exit 0; sleep 1; done; journalctl -u mesh-harness -n 5 --no-pager; exit 1"

  since=$(date '+%Y-%m-%d %H:%M:%S')
  t0=$(now)
  systemctl stop mesh-harness
  info "systemctl stop seconds" "$(elapsed "$t0" "$(now)")"
  check "systemctl stop drains: the proxy exits on SIGTERM, clean result" sh -c "
    [ \"\$(systemctl show -p Result --value mesh-harness)\" = success ] &&
    journalctl -u mesh-harness --since '$since' -o cat --no-pager | grep '\"event\":\"child-exited\"' | grep '\"requested\":true' | grep -v SIGKILL | grep -q '\"component\":\"proxy\"'"
  check "stop with onStop=clean removed the rules" test "$(rules)" = 0

  systemctl enable mesh-harness
  systemctl start mesh-harness
  echo 2 >"$STATE/phase"
  sync
  echo "guest: rebooting"
  exit 0
fi

if [ "$phase" = 2 ]; then
  check "the enabled service is back after the reboot" wait_for 300 systemctl is-active mesh-harness
  info "boot to mesh-harness active seconds" "$(awk '{ print $1 }' /proc/uptime)"

  # Upgrade with a modified conffile, service running.
  printf '%s\n' "$(cat /etc/mesh-harness/config.json)" >/etc/mesh-harness/config.json.orig
  sed -i 's/"format": "json"/"format": "json", "level": "debug"/' /etc/mesh-harness/config.json
  cp /etc/mesh-harness/config.json /root/modified.json
  old_pid=$(main_pid)
  new_deb=$(ls /root/mesh-harness_*systest*_amd64.deb)
  t0=$(now)
  check "apt upgrades to the newer build" apt-get install -y "$new_deb"
  info "apt upgrade seconds" "$(elapsed "$t0" "$(now)")"
  check "the upgrade kept the modified config" cmp /etc/mesh-harness/config.json /root/modified.json
  check "the upgrade restarted the running service" sh -c "systemctl is-active --quiet mesh-harness && [ \"\$(systemctl show -p MainPID --value mesh-harness)\" != $old_pid ] && dpkg-query -W -f='\${Version}' mesh-harness | grep -q systest"

  # The Ansible role, twice, against this machine.
  cp -r "$S/ansible" /root/ansible
  cat >/root/ansible/vars.json <<EOF
{
  "mesh_harness_package_file": "$new_deb",
  "mesh_harness_trust_anchors": $("$NODE" -e 'console.log(JSON.stringify(require("fs").readFileSync("/etc/mesh-harness/trust-anchors.pem", "utf8")))'),
  "mesh_harness_config": $(cat /etc/mesh-harness/config.json.orig)
}
EOF
  cat >/root/ansible/site.yml <<'EOF'
- hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  roles: [mesh_harness]
EOF
  for run in 1 2; do
    t0=$(now)
    ANSIBLE_ROLES_PATH=/root/ansible/roles ANSIBLE_NOCOLOR=1 ansible-playbook -i localhost, /root/ansible/site.yml -e @/root/ansible/vars.json >"$OUT/ansible-$run.log" 2>&1
    rc=$?
    info "ansible run $run seconds" "$(elapsed "$t0" "$(now)")"
    check "ansible run $run succeeds" sh -c "[ $rc = 0 ] || { tail -n 20 '$OUT/ansible-$run.log'; exit 1; }"
  done
  check "ansible: the first run changed the config and reloaded" sh -c "grep -q 'changed=[1-9]' '$OUT/ansible-1.log' && grep -q 'RUNNING HANDLER \[mesh_harness : Reload mesh-harness\]' '$OUT/ansible-1.log'"
  check "ansible: the second run changes nothing" grep -q 'localhost *: ok=[0-9]* *changed=0 .*failed=0' "$OUT/ansible-2.log"
  check "the service is active after the role" systemctl is-active mesh-harness

  # Remove, then purge.
  rm -f /var/cache/mesh-harness-*.deb
  check "apt remove succeeds" apt-get remove -y mesh-harness
  check "remove stopped the service and removed the program" sh -c '! systemctl is-active --quiet mesh-harness && [ ! -e /usr/lib/mesh-harness ] && [ ! -e /usr/bin/mesh-harness ] && [ ! -e /lib/systemd/system/mesh-harness.service ]'
  check "remove left no rules" test "$(rules)" = 0
  check "remove kept the configuration" test -f /etc/mesh-harness/config.json
  check "apt purge succeeds" apt-get purge -y mesh-harness
  check "purge left no files" sh -c 'found=$(find / -xdev \( -path /mnt -o -path /opt/mesh-ci -o -path /root -o -path /var/log/journal -o -path /var/lib/mesh-ci -o -path /etc/systemd/system/mesh-ci-wlapi.service \) -prune -o -name "*mesh-harness*" -print); [ -z "$found" ] || { echo "$found"; exit 1; }'
  check "purge left no user and no group" sh -c '! getent passwd meshproxy && ! getent group meshproxy'
  check "purge left no rules" test "$(rules)" = 0
  check "dpkg has forgotten the package" fail_if dpkg -s mesh-harness
  echo 3 >"$STATE/phase"
  echo done >"$OUT/done"
  sync
fi
