#!/usr/bin/env bash
# Builds the go-micro peers (one module per go-micro version: v4/, v5/, both from peer.go) from the Go module proxy into
# $TSMICRO_CACHE_DIR/interop-<hash>/peer-<version>, unless that folder is there, and prints the folder.
# The hash covers every go.mod, go.sum and .go file here, so a changed peer or dependency builds anew.
# A build goes to a temp folder first: an interrupted one leaves no half cache.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TSMICRO_CACHE_DIR:-/var/cache/tsmicro}
# Each version's main.go is peer.go with that version's import path (not committed).
for version in v4 v5; do
  sed "s#go-micro\.dev/v5#go-micro.dev/$version#g" "$here/peer.go" >"$here/$version/main.go"
done
hash=$(cd "$here" && find . -name go.mod -o -name go.sum -o -name '*.go' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
dir="$cache/interop-$hash"
if [[ ! -d $dir ]]; then
  command -v go >/dev/null || { echo "interop: go is not installed (needed to build the go-micro peers)" >&2; exit 1; }
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.interop-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for version in v4 v5; do
    echo "interop: building the go-micro $version peer with $(go env GOVERSION)" >&2
    (cd "$here/$version" && go build -mod=readonly -trimpath -o "$tmp/peer-$version" .) >&2
  done
  chmod 755 "$tmp" && mv "$tmp" "$dir"
  trap - EXIT
fi
echo "$dir"
