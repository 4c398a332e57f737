#!/usr/bin/env bash
# Prepares this machine for mesh-harness, from a fresh Debian 12 or Ubuntu, as root, in a
# clone of the repository:
#
#   scripts/setup.sh          what `mesh-harness demo` needs: system packages (iptables,
#                             iproute2, nftables ...), the meshproxy account, npm
#                             dependencies, dist/. About a minute.
#   scripts/setup.sh --full   also what `npm test` needs: SPIRE and kube-apiserver built from
#                             source (Go 1.21 or newer needed), the packaging tools and the test
#                             VM image. About 20 minutes the first time, seconds after.
#
# One line per step, with what it did and how long it took. Every step looks first and does
# only what is missing, so a second run is quick and changes nothing. The output of the
# commands a step runs goes to a log, shown when the step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: scripts/setup.sh [--full]
  (none)   what the demo needs: system packages, the meshproxy account, npm ci, npm run build
  --full   also what the tests need: SPIRE, kube-apiserver, packaging tools, the test VM image
EOF
}

level=demo
case "${1:-}" in
  '') ;;
  --full) level=full ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 64 ;;
esac
[[ $# -le 1 ]] || { usage >&2; exit 64; }

if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/setup.sh installs system packages and creates the meshproxy account: run it as root" >&2
  exit 1
fi

# System packages by level (Debian and Ubuntu names). The demo: the network namespaces, real
# iptables and nftables in them, setpriv, ps, and what the tests need beside them (python3
# reads sd_notify datagrams, openssl makes the API server's CA).
DEMO_PACKAGES=(iptables iproute2 nftables util-linux procps python3 openssl ca-certificates)
# The full test suite: gcc for SPIRE's sqlite (CGO), etcd for kube-apiserver; dpkg-deb,
# rpmbuild, lintian, file and xz for the packages; skopeo reads the registrar image;
# debootstrap, mkfs.ext4 and qemu build and boot the test VM; packaging strips each
# architecture's ELF files with its own binutils (amd64's come with dpkg-dev); python3-venv
# holds ansible-lint.
FULL_PACKAGES=(gcc libc6-dev git etcd-server dpkg-dev rpm lintian file xz-utils skopeo debootstrap e2fsprogs qemu-system-x86 qemu-utils binutils-aarch64-linux-gnu python3-venv)

# The steps, in order. To add one: write a step_<name> function (it may set `outcome` to say
# what it found or did) and list it with its description below; apt packages go in the
# arrays above instead.
DEMO_STEPS=(
  "system_packages|system packages (apt)"
  "node|Node.js 20.5 or newer"
  "account|the meshproxy account (as the .deb and .rpm create it)"
  "npm_dependencies|npm dependencies (npm ci)"
  "build|dist/ (npm run build)"
)
FULL_STEPS=(
  "go|Go 1.21 or newer (it fetches the Go version SPIRE and Kubernetes ask for)"
  "spire|SPIRE server and agent into /usr/local/bin (built from source: minutes the first time)"
  "kube_apiserver|kube-apiserver and kubectl into /usr/local/bin (built from source: minutes the first time)"
  "ansible_lint|ansible-lint 26.10.1 (pinned, from PyPI) in /opt/ansible-lint"
  "vm_image|the test VM image in /var/cache/mesh-harness-ci (debootstrap: minutes the first time)"
)

log=$(mktemp "${TMPDIR:-/tmp}/mesh-harness-setup.XXXXXX")
trap 'rm -f "$log"' EXIT
outcome=''

step_system_packages() {
  local wanted=("${DEMO_PACKAGES[@]}") missing=() p
  [[ $level == full ]] && wanted+=("${FULL_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]] || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    outcome="all ${#wanted[@]} installed"
    return
  fi
  command -v apt-get >/dev/null || { echo "no apt-get here: install ${missing[*]} with this system's package manager" >&2; return 69; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  outcome="installed ${missing[*]}"
}

step_node() {
  command -v node >/dev/null && node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 5) ? 0 : 1)' \
    || { echo "Node.js 20.5 or newer is required (found: $(node --version 2>/dev/null || echo none)); see https://nodejs.org/en/download" >&2; return 69; }
  outcome=$(node --version)
}

step_account() {
  if getent passwd meshproxy >/dev/null && getent group meshproxy >/dev/null; then
    outcome='exists'
    return
  fi
  sh packaging/scripts/create-meshproxy-account.sh
  outcome='created'
}

# npm ci replaces node_modules wholesale; it runs only when the lockfile changed since the last install.
step_npm_dependencies() {
  local stamp=node_modules/.mesh-harness-setup lock
  lock=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$lock" ]]; then
    outcome='up to date with package-lock.json'
    return
  fi
  npm ci --no-audit --no-fund
  echo "$lock" >"$stamp"
  outcome='installed'
}

step_build() {
  npm run build
}

step_go() {
  command -v go >/dev/null && go version | grep -qE 'go1\.(2[1-9]|[3-9][0-9])|go[2-9]' \
    || { echo "Go 1.21 or newer is required to build SPIRE and kube-apiserver (found: $(go version 2>/dev/null || echo none)); Debian 12's golang-go is 1.19, too old: take one from bookworm-backports or https://go.dev/dl" >&2; return 69; }
  outcome=$(go version | cut -d' ' -f3)
}

step_spire() {
  bash scripts/install-spire.sh /usr/local/bin
  outcome="spire-server $(/usr/local/bin/spire-server --version 2>&1)"
}

step_kube_apiserver() {
  bash scripts/install-kube-apiserver.sh /usr/local/bin
  outcome=$(/usr/local/bin/kube-apiserver --version)
}

# test/system/ansible-lint.test.ts runs it; Debian's Python refuses pip installs into the
# system, so it gets a virtualenv of its own.
step_ansible_lint() {
  local version=26.10.1
  if [[ "$(/opt/ansible-lint/bin/ansible-lint --version 2>/dev/null | head -n 1)" != *"$version"* ]]; then
    rm -rf /opt/ansible-lint
    python3 -m venv /opt/ansible-lint
    /opt/ansible-lint/bin/pip install --quiet --disable-pip-version-check "ansible-lint==$version"
    outcome='installed'
  else
    outcome='up to date'
  fi
  ln -sf /opt/ansible-lint/bin/ansible-lint /usr/local/bin/ansible-lint
}

step_vm_image() {
  bash scripts/build-test-vm.sh
  outcome=$(grep -o 'vm-[0-9a-f]*\.qcow2' "$log" | tail -n 1)
}

steps=("${DEMO_STEPS[@]}")
[[ $level == full ]] && steps+=("${FULL_STEPS[@]}")
started=$(date +%s)
n=0
for entry in "${steps[@]}"; do
  n=$((n + 1))
  name=${entry%%|*}
  printf '[%d/%d] %s ... ' "$n" "${#steps[@]}" "${entry#*|}"
  outcome=''
  began=$(date +%s)
  : >"$log"
  # In a subshell: a failing command ends the step (errexit holds there), not the loop, and
  # its output is kept for the report.
  set +e
  ( set -euo pipefail; "step_$name" >>"$log" 2>&1; printf '%s' "$outcome" >"$log.outcome" )
  status=$?
  set -e
  if [[ $status -ne 0 ]]; then
    echo "FAILED (exit $status)"
    tail -n 40 "$log" >&2
    rm -f "$log.outcome"
    exit "$status"
  fi
  outcome=$(cat "$log.outcome" 2>/dev/null || true)
  rm -f "$log.outcome"
  echo "${outcome:-done} ($(($(date +%s) - began)) s)"
done
echo "setup ($level) complete in $(($(date +%s) - started)) s"
