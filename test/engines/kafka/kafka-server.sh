#!/bin/sh
# kafka-server DIR PORT CONTROLLER_PORT
# Runs Apache Kafka as one KRaft node that is a broker and its own controller, listening on
# 127.0.0.1:PORT for clients and 127.0.0.1:CONTROLLER_PORT for the controller, nowhere else (no
# JMX port). Writes DIR/server.properties, formats DIR/data with a new cluster id on first use and
# keeps it after that, then becomes the JVM (exec): SIGTERM to this PID shuts Kafka down cleanly.
# Logs go to stderr at $KAFKA_LOG_LEVEL (default INFO).
# .ci/setup/kafka.sh installs this as $TSMICRO_CACHE_DIR/bin/kafka-server, with @KAFKA_HOME@ (the
# folder holding libs/ and log4j2.properties) and @JAVA@ filled in.
set -e
dir=${1:?usage: kafka-server DIR PORT CONTROLLER_PORT}
port=${2:?usage: kafka-server DIR PORT CONTROLLER_PORT}
controller_port=${3:?usage: kafka-server DIR PORT CONTROLLER_PORT}
home='@KAFKA_HOME@'
java='@JAVA@'

mkdir -p "$dir"
# Topics are created on first use; short consumer-group sessions are allowed, and a new group
# starts at once, so tests do not wait for Kafka's production timings. Messages of up to 4 MiB.
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
message.max.bytes=4194304
PROPS

opts="-Xms128m -Xmx512m -Djava.awt.headless=true -Dlog4j2.configurationFile=$home/log4j2.properties"
if [ ! -e "$dir/data/meta.properties" ]; then
  cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)
  "$java" $opts -cp "$home/libs/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties"
fi
exec "$java" $opts -cp "$home/libs/*" kafka.Kafka "$dir/server.properties"
