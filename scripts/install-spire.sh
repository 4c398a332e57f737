#!/usr/bin/env bash
# Installs the pinned SPIRE server and agent used by the integration tests and the demo.
#
# Why not `go install github.com/spiffe/spire/cmd/spire-server@v1.15.3`: on machines that
# reach only the Go module proxy, `go install pkg@version` fails while checking the module
# for deprecation (the proxy's version list is not served), and one optional server
# plugin (the EJBCA UpstreamAuthority) imports a module the proxy refuses. So we download
# the pinned module source, drop that one plugin from the server's plugin catalog, and
# build both binaries from the module's own go.mod. Nothing else is changed.
#
# Usage: scripts/install-spire.sh [DEST_DIR]   (default /usr/local/bin)
set -euo pipefail

SPIRE_VERSION="${SPIRE_VERSION:-v1.15.3}"
DEST="${1:-/usr/local/bin}"

if [[ -x "$DEST/spire-server" && -x "$DEST/spire-agent" ]] \
  && "$DEST/spire-server" --version 2>&1 | grep -q "^${SPIRE_VERSION#v}" \
  && "$DEST/spire-agent" --version 2>&1 | grep -q "^${SPIRE_VERSION#v}"; then
  echo "spire ${SPIRE_VERSION} already installed in $DEST"
  exit 0
fi

command -v go >/dev/null || { echo "install-spire: Go is required (apt-get install golang, or the distribution's Go)" >&2; exit 69; }
command -v gcc >/dev/null || { echo "install-spire: gcc is required for spire-server (CGO, sqlite): apt-get install gcc" >&2; exit 69; }

export GOFLAGS="${GOFLAGS:-} -mod=mod"
module_dir=$(go mod download -json "github.com/spiffe/spire@${SPIRE_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$module_dir" ]] || { echo "install-spire: could not download github.com/spiffe/spire@${SPIRE_VERSION}" >&2; exit 69; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$module_dir/." "$work/"
chmod -R u+w "$work"
catalog="$work/pkg/server/catalog/upstreamauthority.go"
sed -i -e '/pkg\/server\/plugin\/upstreamauthority\/ejbca"/d' -e '/ejbca\.BuiltIn(),/d' "$catalog"
if grep -q ejbca "$catalog"; then
  echo "install-spire: could not remove the EJBCA plugin from $catalog; has the file changed upstream?" >&2
  exit 1
fi

ldflags="-X github.com/spiffe/spire/pkg/common/version.gittag=${SPIRE_VERSION#v}"
mkdir -p "$DEST"
(cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$DEST/spire-agent" ./cmd/spire-agent)
(cd "$work" && CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$DEST/spire-server" ./cmd/spire-server)
"$DEST/spire-server" --version
"$DEST/spire-agent" --version
