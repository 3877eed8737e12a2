# shellcheck shell=bash
# Sourced by the CI entry: installs Debian's NATS, Mosquitto, RabbitMQ and Redis when missing and
# starts each on loopback unless its port already answers — NATS with JetStream (127.0.0.1:4222),
# Mosquitto (1883), RabbitMQ (5672, guest/guest), Redis (6379) — with configs of ours, never the
# packages' services (those listen on every interface). Idempotent, no prompts, every wait bounded.
# Being sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# The suite's at-least-once NATS mode needs JetStream: the server's INFO line says whether it is on.
tsmicro_nats_has_jetstream() {
  local info=""
  info=$(exec 3<>/dev/tcp/127.0.0.1/4222 && read -r -t 5 line <&3 && echo "$line") 2>/dev/null
  [[ $info == *'"jetstream":true'* ]] && return 0
  echo "brokers: the NATS server on 127.0.0.1:4222 runs without JetStream (it needs -js)" >&2
  return 1
}

tsmicro_start_mosquitto() {
  local dir="$TSMICRO_RUN_DIR/mosquitto"
  mkdir -p "$dir" && printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n' >"$dir/mosquitto.conf" || return 1
  tsmicro_start_engine mosquitto 1883 20 mosquitto -c "$dir/mosquitto.conf"
}

# The server script itself, not /usr/sbin/rabbitmq-server (which switches to the rabbitmq user and
# drops our environment). Node, AMQP, distribution and epmd all on loopback.
tsmicro_start_rabbitmq() {
  local dir="$TSMICRO_RUN_DIR/rabbitmq"
  mkdir -p "$dir" || return 1
  printf 'listeners.tcp.1 = 127.0.0.1:5672\nloopback_users.guest = true\n' >"$dir/rabbitmq.conf"
  printf '[].\n' >"$dir/enabled_plugins"
  [[ -e $dir/.erlang.cookie ]] || { echo "tsmicro-ci-$RANDOM$RANDOM" >"$dir/.erlang.cookie" && chmod 400 "$dir/.erlang.cookie"; }
  # Erlang boots slowly on a busy machine: allow two minutes.
  HOME=$dir RABBITMQ_NODENAME=tsmicro@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 \
    RABBITMQ_DIST_PORT=25672 RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_CONF_ENV_FILE=/dev/null \
    ERL_EPMD_ADDRESS=127.0.0.1 ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    tsmicro_start_engine rabbitmq 5672 120 /usr/lib/rabbitmq/bin/rabbitmq-server
}

tsmicro_setup_brokers() {
  tsmicro_apt_install nats-server mosquitto rabbitmq-server redis-server || return 1
  local rc=0
  mkdir -p "$TSMICRO_RUN_DIR/nats" "$TSMICRO_RUN_DIR/redis" || return 1
  tsmicro_start_engine nats 4222 20 nats-server -a 127.0.0.1 -p 4222 -js -sd "$TSMICRO_RUN_DIR/nats/data" &&
    tsmicro_nats_has_jetstream || rc=1
  tsmicro_start_mosquitto || rc=1
  tsmicro_start_rabbitmq || rc=1
  tsmicro_start_engine redis 6379 20 redis-server --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$TSMICRO_RUN_DIR/redis" --daemonize no || rc=1
  return $rc
}

tsmicro_setup_brokers
