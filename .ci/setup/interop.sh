# shellcheck shell=bash
# Sourced by the CI entry: builds the go-micro peers of the interop suite (go-micro v4.11 with
# plugins v4, and go-micro v5) from the Go module proxy, once per change of their sources or
# dependencies (cached under $TSMICRO_CACHE_DIR/interop-<hash>/), and exports their folder as
# TSMICRO_INTEROP_BIN. Being sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

tsmicro_setup_interop() {
  local started=$SECONDS dir
  dir=$(bash "$(dirname "${BASH_SOURCE[0]}")/../../test/interop/go/build.sh") || { echo "interop: building the go-micro peers failed" >&2; return 1; }
  export TSMICRO_INTEROP_BIN=$dir
  echo "interop: go-micro peers in $dir ready in $((SECONDS - started)) s"
}

tsmicro_setup_interop
