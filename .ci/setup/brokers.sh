# shellcheck shell=bash
# Sourced by the CI entry: makes sure the brokers of the conformance suite run on loopback — NATS
# with JetStream (127.0.0.1:4222), Mosquitto (1883), RabbitMQ (5672), Redis (6379) — starting each
# one that does not listen yet with its standard command (their packages and /etc configs come with
# the machine). Idempotent, no prompts, every wait bounded. Being sourced, it never exits the
# caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Starts a broker with the given command unless its port already accepts connections:
# tsmicro_ensure_broker NAME PORT WAIT_SECONDS COMMAND...
tsmicro_ensure_broker() {
  local name=$1 port=$2 wait=$3
  shift 3
  if tsmicro_port_open "$port"; then echo "brokers: $name already on 127.0.0.1:$port"; return 0; fi
  command -v "$1" >/dev/null || { echo "brokers: $name is not installed ($1 not found)" >&2; return 1; }
  "$@" </dev/null || { echo "brokers: starting $name failed: $*" >&2; return 1; }
  if tsmicro_wait_port "$port" "$wait"; then
    echo "brokers: $name started on 127.0.0.1:$port"
  else
    echo "brokers: $name did not listen on 127.0.0.1:$port within $wait s" >&2
    return 1
  fi
}

# The suite's at-least-once NATS mode needs JetStream: the server's INFO line says whether it is on.
tsmicro_nats_has_jetstream() {
  local info=""
  info=$(exec 3<>/dev/tcp/127.0.0.1/4222 && read -r -t 5 line <&3 && echo "$line") 2>/dev/null
  [[ $info == *'"jetstream":true'* ]] && return 0
  echo "brokers: the NATS server on 127.0.0.1:4222 runs without JetStream (it needs -js)" >&2
  return 1
}

tsmicro_setup_brokers() {
  local rc=0
  mkdir -p /var/lib/nats-server /var/lib/redis /var/log/redis || rc=1
  tsmicro_ensure_broker NATS 4222 20 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log && tsmicro_nats_has_jetstream || rc=1
  tsmicro_ensure_broker Mosquitto 1883 20 mosquitto -d -c /etc/mosquitto/mosquitto.conf || rc=1
  # RabbitMQ boots an Erlang VM: allow it a minute and a half.
  tsmicro_ensure_broker RabbitMQ 5672 90 rabbitmq-server -detached || rc=1
  tsmicro_ensure_broker Redis 6379 20 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || rc=1
  return $rc
}

tsmicro_setup_brokers
