# shellcheck shell=bash
# Sourced by the CI entry: makes sure etcd (127.0.0.1:2379) and ZooKeeper (127.0.0.1:2181) run for the
# registry conformance suite. Installs Debian's etcd-server and zookeeperd when missing; starts each
# server with a temp data dir unless something already listens on its port. Idempotent, no prompts,
# every wait bounded. Being sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

tsmicro_zk_home() {
  local dir
  for dir in /usr/share/zookeeper /opt/zookeeper; do
    [[ -x $dir/bin/zkServer.sh ]] && { echo "$dir"; return 0; }
  done
  return 1
}

tsmicro_install_registry_servers() {
  local missing=()
  command -v etcd >/dev/null || [[ -x /usr/bin/etcd ]] || missing+=(etcd-server)
  tsmicro_zk_home >/dev/null || missing+=(zookeeperd)
  ((${#missing[@]})) || return 0
  echo "registries: installing ${missing[*]}"
  # Packages must not start their services: Debian's defaults listen on every interface, ours only on loopback.
  local blocked_service_start=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && blocked_service_start=1
  fi
  local rc=0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  ((blocked_service_start)) && rm -f /usr/sbin/policy-rc.d
  return $rc
}

tsmicro_start_etcd() {
  if tsmicro_port_open 2379; then echo "registries: etcd already on 127.0.0.1:2379"; return 0; fi
  local dir
  dir=$(mktemp -d /tmp/tsmicro-etcd.XXXXXX) || return 1
  setsid etcd --name tsmicro --data-dir "$dir/data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster tsmicro=http://127.0.0.1:2380 >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  if tsmicro_wait_port 2379 30; then
    echo "registries: etcd started on 127.0.0.1:2379 (pid $(cat "$dir/pid"), log $dir/etcd.log)"
  else
    echo "registries: etcd did not listen on 127.0.0.1:2379 within 30 s; log:" >&2
    tail -n 20 "$dir/etcd.log" >&2
    return 1
  fi
}

tsmicro_start_zookeeper() {
  if tsmicro_port_open 2181; then echo "registries: zookeeper already on 127.0.0.1:2181"; return 0; fi
  local home dir
  home=$(tsmicro_zk_home) || { echo "registries: zookeeper is not installed" >&2; return 1; }
  dir=$(mktemp -d /tmp/tsmicro-zookeeper.XXXXXX) || return 1
  # Short ticks and a wide session range let a registry tie its session timeout to a TTL of a few seconds.
  cat >"$dir/zoo.cfg" <<CFG
dataDir=$dir/data
clientPort=2181
clientPortAddress=127.0.0.1
tickTime=500
minSessionTimeout=1000
maxSessionTimeout=300000
initLimit=10
syncLimit=5
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
CFG
  # JMX would listen on every interface.
  JMXDISABLE=true setsid "$home/bin/zkServer.sh" start-foreground "$dir/zoo.cfg" \
    >"$dir/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  if tsmicro_wait_port 2181 60; then
    echo "registries: zookeeper started on 127.0.0.1:2181 (pid $(cat "$dir/pid"), log $dir/zookeeper.log)"
  else
    echo "registries: zookeeper did not listen on 127.0.0.1:2181 within 60 s; log:" >&2
    tail -n 20 "$dir/zookeeper.log" >&2
    return 1
  fi
}

tsmicro_setup_registries() {
  tsmicro_install_registry_servers || { echo "registries: installing etcd-server/zookeeperd failed" >&2; return 1; }
  local rc=0
  tsmicro_start_etcd || rc=1
  tsmicro_start_zookeeper || rc=1
  return $rc
}

tsmicro_setup_registries
