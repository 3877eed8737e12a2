# shellcheck shell=bash
# Sourced by the CI entry: makes sure nsqd runs for the nsq broker's conformance cases, on
# 127.0.0.1:4150 (TCP) and 127.0.0.1:4151 (HTTP API), HTTPS off, with its data under
# $TSMICRO_RUN_DIR/nsq. nsqd is built from the Go module proxy through the wrapper module
# test/engines/nsq (its go.mod pins the NSQ release) into $TSMICRO_CACHE_DIR/nsq-<version>/ once per
# version, and linked as $TSMICRO_CACHE_DIR/bin/nsqd, where the tests start servers of their own.
# Idempotent, no prompts, every wait bounded. Being sourced, it never exits the caller's shell:
# failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# The suite sends 1 MiB bodies, which with their headers exceed nsqd's default limit (1 MiB).
TSMICRO_NSQ_MAX_MSG_SIZE=$((4 * 1024 * 1024))

tsmicro_nsq_module() { (cd "$(dirname "${BASH_SOURCE[0]}")/../../test/engines/nsq" && pwd); }

# The NSQ release the wrapper module requires, e.g. v1.3.0.
tsmicro_nsq_version() {
  awk '$1 == "require" && $2 == "github.com/nsqio/nsq" { print $3 }' "$(tsmicro_nsq_module)/go.mod"
}

# Builds nsqd into $TSMICRO_CACHE_DIR/nsq-<version>/ unless it is there; a build goes to a temp
# folder first, so an interrupted one leaves no half cache.
tsmicro_build_nsqd() {
  local version=$1 module dir tmp
  dir="$TSMICRO_CACHE_DIR/nsq-${version#v}"
  [[ -x $dir/nsqd ]] && return 0
  command -v go >/dev/null || { echo "nsq: go is not installed (needed to build nsqd)" >&2; return 1; }
  module=$(tsmicro_nsq_module) || return 1
  mkdir -p "$TSMICRO_CACHE_DIR" || return 1
  tmp=$(mktemp -d "$TSMICRO_CACHE_DIR/.nsq-build.XXXXXX") || return 1
  echo "nsq: building nsqd $version with $(go env GOVERSION)"
  if ! (cd "$module" && go build -mod=readonly -trimpath -o "$tmp/nsqd" github.com/nsqio/nsq/apps/nsqd); then
    rm -rf "$tmp"
    echo "nsq: building nsqd $version failed" >&2
    return 1
  fi
  chmod 755 "$tmp" && rm -rf "$dir" && mv "$tmp" "$dir"
}

tsmicro_setup_nsq() {
  local started=$SECONDS version
  version=$(tsmicro_nsq_version)
  [[ -n $version ]] || { echo "nsq: no github.com/nsqio/nsq version in test/engines/nsq/go.mod" >&2; return 1; }
  tsmicro_build_nsqd "$version" || return 1
  mkdir -p "$TSMICRO_CACHE_DIR/bin" "$TSMICRO_RUN_DIR/nsq/data" || return 1
  ln -sfn "../nsq-${version#v}/nsqd" "$TSMICRO_CACHE_DIR/bin/nsqd" || return 1
  # Every listener on loopback (HTTPS off); the broadcast address is what nsqlookupd would hand out.
  tsmicro_start_engine nsq 4150 30 "$TSMICRO_CACHE_DIR/bin/nsqd" \
    --tcp-address=127.0.0.1:4150 --http-address=127.0.0.1:4151 --https-address= \
    --broadcast-address=127.0.0.1 --data-path="$TSMICRO_RUN_DIR/nsq/data" \
    --max-msg-size="$TSMICRO_NSQ_MAX_MSG_SIZE" || return 1
  echo "nsq: $("$TSMICRO_CACHE_DIR/bin/nsqd" --version) ready in $((SECONDS - started)) s"
}

tsmicro_setup_nsq
