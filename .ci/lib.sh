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

# Where slow downloads and builds (Maven jars, Go builds) are kept between runs on one machine, each
# under a folder named by its version. Outside the clone: CI runs in a fresh one every time.
TSMICRO_CACHE_DIR="${TSMICRO_CACHE_DIR:-/var/cache/tsmicro}"
export TSMICRO_CACHE_DIR
# Long-running engines started by .ci/setup keep their data and logs here (one folder each).
TSMICRO_RUN_DIR="${TSMICRO_RUN_DIR:-/var/tmp/tsmicro-engines}"
export TSMICRO_RUN_DIR

# Installs Debian packages that are missing, without letting them start their services: Debian's
# defaults listen on every interface, ours are started on loopback by the setup scripts.
# tsmicro_apt_install PACKAGE...
tsmicro_apt_install() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  echo "apt: installing ${missing[*]}"
  local blocked_service_start=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && blocked_service_start=1
  fi
  local rc=0
  # One package-list update per CI run (the setup scripts share this shell).
  if [[ -z ${TSMICRO_APT_UPDATED:-} ]]; then
    apt-get update -qq && TSMICRO_APT_UPDATED=1 || rc=$?
  fi
  ((rc == 0)) && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?; }
  ((blocked_service_start)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || echo "apt: installing ${missing[*]} failed" >&2
  return $rc
}

# Starts a long-running engine in its own session (process group) with its output in
# $TSMICRO_RUN_DIR/NAME/NAME.log and its PID in NAME.pid, then waits up to WAIT seconds for its port.
# tsmicro_start_engine NAME PORT WAIT COMMAND...
tsmicro_start_engine() {
  local name=$1 port=$2 wait=$3
  shift 3
  if tsmicro_port_open "$port"; then echo "engines: $name already on 127.0.0.1:$port"; return 0; fi
  local dir="$TSMICRO_RUN_DIR/$name" started=$SECONDS
  mkdir -p "$dir" || return 1
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
  if tsmicro_wait_port "$port" "$wait"; then
    echo "engines: $name started on 127.0.0.1:$port in $((SECONDS - started)) s (pid $(cat "$dir/$name.pid"), log $dir/$name.log)"
  else
    echo "engines: $name did not listen on 127.0.0.1:$port within $wait s; log:" >&2
    tail -n 30 "$dir/$name.log" >&2
    return 1
  fi
}
