# shellcheck shell=bash
# Sourced by the CI entry: makes sure a Consul agent runs in dev mode (one server, state in memory)
# on 127.0.0.1:8500 for the registry conformance suite. Consul is built from the Go module proxy by
# the wrapper module test/engines/consul (the open-source MPL-2.0 release its go.mod pins) into
# $TSMICRO_CACHE_DIR/consul-<version>/ once per version, and linked as $TSMICRO_CACHE_DIR/bin/consul
# for the tests, which start agents of their own. Idempotent, no prompts, every wait bounded. Being
# sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TSMICRO_CONSUL_MODULE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../test/engines/consul" && pwd)"

# Builds consul unless this version is cached; prints the binary's path.
tsmicro_build_consul() {
  local version dir tmp go started=$SECONDS
  version=$(awk '$1 == "github.com/hashicorp/consul" { sub(/^v/, "", $2); print $2 }' "$TSMICRO_CONSUL_MODULE/go.mod")
  [[ -n $version ]] || { echo "consul: no github.com/hashicorp/consul version in $TSMICRO_CONSUL_MODULE/go.mod" >&2; return 1; }
  dir="$TSMICRO_CACHE_DIR/consul-$version"
  if [[ ! -x $dir/consul ]]; then
    go=$(command -v go || echo /usr/local/go/bin/go)
    [[ -x $go ]] || { echo "consul: building it needs Go (go not found)" >&2; return 1; }
    echo "consul: building $version from the Go module proxy (once per version; about 10 minutes on 2 cores)" >&2
    mkdir -p "$TSMICRO_CACHE_DIR" && tmp=$(mktemp -d "$TSMICRO_CACHE_DIR/consul-$version.XXXXXX") && chmod 755 "$tmp" || return 1
    if ! (cd "$TSMICRO_CONSUL_MODULE" && timeout 3600 "$go" build -mod=readonly -trimpath -ldflags='-s -w' -o "$tmp/consul" .) >&2; then
      echo "consul: building $version failed" >&2
      rm -rf "$tmp"
      return 1
    fi
    rm -rf "$dir" && mv "$tmp" "$dir" || return 1
    echo "consul: built $version in $((SECONDS - started)) s" >&2
  fi
  mkdir -p "$TSMICRO_CACHE_DIR/bin" && ln -sfn "$dir/consul" "$TSMICRO_CACHE_DIR/bin/consul" || return 1
  echo "$dir/consul"
}

# Waits up to $1 seconds for the agent on 8500 to name a raft leader.
tsmicro_wait_consul_leader() {
  local deadline=$((SECONDS + $1)) leader
  until leader=$(curl -fsS -m 2 http://127.0.0.1:8500/v1/status/leader 2>/dev/null) && [[ $leader == '"'?*'"' ]]; do
    ((SECONDS < deadline)) || { echo "consul: no leader within $1 s" >&2; return 1; }
    sleep 0.2
  done
}

tsmicro_setup_consul() {
  local started=$SECONDS bin
  bin=$(tsmicro_build_consul) || return 1
  echo "consul: $("$bin" version | head -n 1)"
  # Every listener on loopback: HTTP 8500, DNS 8600, gRPC 8502 and 8503 (TLS) on -client, server RPC 8300 and
  # Serf LAN/WAN 8301/8302 on -bind.
  tsmicro_start_engine consul 8500 60 "$bin" agent -dev -log-level=info -bind=127.0.0.1 -client=127.0.0.1 || return 1
  tsmicro_wait_consul_leader 30 || return 1
  echo "consul: ready on 127.0.0.1:8500 (setup took $((SECONDS - started)) s)"
}

tsmicro_setup_consul
