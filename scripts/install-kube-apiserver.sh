#!/usr/bin/env bash
# Installs the pinned kube-apiserver (and kubectl) the registrar tests run against.
#
# Why build from source: the registrar's tests need a real kube-apiserver (CRD validation,
# the status subresource, preconditions, RBAC, watch bookmarks, 410 Gone after compaction),
# and machines that reach only the Go module proxy cannot download release binaries.
#
# Why not `go build` in the downloaded k8s.io/kubernetes module as it is: its go.mod
# replaces every k8s.io/X staging module with ./staging/src/k8s.io/X, and the staging
# directories are not part of the module zip (nor is go.work usable without them). The
# same code is published as the modules k8s.io/X v0.36.Y for kubernetes v1.36.Y, so in a
# copy of the module we point each replace at the published module and build from that.
# Nothing else is changed. The Go build cache makes a second run (or a version bump) fast.
#
# etcd comes from Debian's etcd-server package (.ci/run installs it).
#
# Usage: scripts/install-kube-apiserver.sh [DEST_DIR]   (default /usr/local/bin)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
DEST="${1:-/usr/local/bin}"
staging_version="v0.${KUBE_VERSION#v1.}"

installed() { [[ -x "$DEST/$1" ]] && "$DEST/$1" --version 2>/dev/null | grep -q "Kubernetes ${KUBE_VERSION}\$"; }
if installed kube-apiserver && [[ -x "$DEST/kubectl" ]] \
  && "$DEST/kubectl" version --client 2>/dev/null | grep -q "Client Version: ${KUBE_VERSION}\$"; then
  echo "kube-apiserver and kubectl ${KUBE_VERSION} already installed in $DEST"
  exit 0
fi

command -v go >/dev/null || { echo "install-kube-apiserver: Go is required (apt-get install golang, or the distribution's Go)" >&2; exit 69; }

export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOWORK=off
module_dir=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$module_dir" ]] || { echo "install-kube-apiserver: could not download k8s.io/kubernetes@${KUBE_VERSION}" >&2; exit 69; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# Everything but vendor/ (its modules.txt names the staging directories, so -mod=vendor
# cannot work) and go.work (it lists the staging directories).
(cd "$module_dir" && tar -cf - --exclude=./vendor --exclude=./go.work --exclude=./go.work.sum .) | tar -xf - -C "$work"
chmod -R u+w "$work"
sed -i -E "s#^([[:space:]]*k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+\$#\1 => \1 ${staging_version}#" "$work/go.mod"
if grep -q '\./staging/' "$work/go.mod"; then
  echo "install-kube-apiserver: go.mod still replaces modules with ./staging directories; has its layout changed upstream?" >&2
  exit 1
fi

pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")"
ldflags+=" -X $pkg.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION}"
mkdir -p "$DEST"
(cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$DEST/kube-apiserver" ./cmd/kube-apiserver)
(cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$DEST/kubectl" ./cmd/kubectl)
"$DEST/kube-apiserver" --version
"$DEST/kubectl" version --client
