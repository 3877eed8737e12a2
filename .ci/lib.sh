# shellcheck shell=bash
# Helpers for the .ci/setup scripts (sourced by them, not run on its own).

tsmicro_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds for 127.0.0.1:$1 to accept connections.
tsmicro_wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until tsmicro_port_open "$port"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
