# shellcheck shell=bash
# Sourced by the CI entry: installs Debian's etcd-server (+ etcd-client) and zookeeperd when missing
# and starts etcd (127.0.0.1:2379) and ZooKeeper (127.0.0.1:2181) on loopback unless their ports
# already answer. Idempotent, no prompts, every wait bounded. Being sourced, it never exits the
# caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

tsmicro_zk_home() {
  local dir
  for dir in /usr/share/zookeeper /opt/zookeeper; do
    [[ -x $dir/bin/zkServer.sh ]] && { echo "$dir"; return 0; }
  done
  return 1
}

tsmicro_start_etcd() {
  local dir="$TSMICRO_RUN_DIR/etcd"
  tsmicro_start_engine etcd 2379 30 etcd --name tsmicro --data-dir "$dir/data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster tsmicro=http://127.0.0.1:2380
}

tsmicro_start_zookeeper() {
  local home dir="$TSMICRO_RUN_DIR/zookeeper"
  home=$(tsmicro_zk_home) || { echo "registries: zookeeper is not installed" >&2; return 1; }
  mkdir -p "$dir" || return 1
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
  JMXDISABLE=true tsmicro_start_engine zookeeper 2181 60 "$home/bin/zkServer.sh" start-foreground "$dir/zoo.cfg"
}

tsmicro_setup_registries() {
  tsmicro_apt_install etcd-server etcd-client zookeeperd || return 1
  local rc=0
  tsmicro_start_etcd || rc=1
  tsmicro_start_zookeeper || rc=1
  return $rc
}

tsmicro_setup_registries
