# shellcheck shell=bash
# Sourced by the CI entry: makes sure Apache Kafka (KRaft, one combined broker+controller node) runs
# on 127.0.0.1:9092 for the kafka broker tests, and that the conformance suite's restart case can
# start Kafkas of its own through $TSMICRO_CACHE_DIR/bin/kafka-server.
# Kafka comes from Maven Central: test/engines/kafka/pom.xml copies the server and its runtime
# dependencies into $TSMICRO_CACHE_DIR/kafka-<version>/libs once per version (Maven's ~/.m2 keeps
# the jars too). Idempotent, no prompts, every wait bounded. Being sourced, it never exits the
# caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TSMICRO_KAFKA_ENGINE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../test/engines/kafka" && pwd)"
TSMICRO_KAFKA_POM="$TSMICRO_KAFKA_ENGINE/pom.xml"

# The version the pom pins (its kafka.version property).
tsmicro_kafka_version() {
  sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$TSMICRO_KAFKA_POM" | head -n 1
}

# Copies Kafka's jars into $1/libs unless they are there: built in a temp dir, moved into place
# whole, so an interrupted download never leaves half a cache.
tsmicro_kafka_libs() {
  local home=$1
  [[ -d $home/libs ]] && return 0
  local tmp
  tmp=$(mktemp -d "$TSMICRO_CACHE_DIR/.kafka-build.XXXXXX") || return 1
  echo "kafka: copying Kafka $(tsmicro_kafka_version) and its dependencies from Maven Central"
  if ! timeout 900 mvn -B -q -f "$TSMICRO_KAFKA_POM" package -DoutputDirectory="$tmp/libs" </dev/null; then
    echo "kafka: mvn could not copy Kafka's jars (see above)" >&2
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$home" && mv "$tmp/libs" "$home/libs"
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

# Installs $TSMICRO_CACHE_DIR/bin/kafka-server (test/engines/kafka/kafka-server.sh with this
# version's folder and java filled in) and the log4j2 config it names.
tsmicro_kafka_launcher() {
  local home=$1 java bin="$TSMICRO_CACHE_DIR/bin"
  java=$(command -v java) || { echo "kafka: java is not installed" >&2; return 1; }
  mkdir -p "$bin" &&
    cp "$TSMICRO_KAFKA_ENGINE/log4j2.properties" "$home/log4j2.properties" &&
    sed -e "s|@KAFKA_HOME@|$home|g" -e "s|@JAVA@|$java|g" "$TSMICRO_KAFKA_ENGINE/kafka-server.sh" >"$bin/kafka-server.tmp" &&
    chmod +x "$bin/kafka-server.tmp" && mv "$bin/kafka-server.tmp" "$bin/kafka-server"
}

tsmicro_setup_kafka() {
  local started=$SECONDS version home
  version=$(tsmicro_kafka_version)
  [[ -n $version ]] || { echo "kafka: no kafka.version in $TSMICRO_KAFKA_POM" >&2; return 1; }
  command -v java >/dev/null && command -v mvn >/dev/null || tsmicro_apt_install openjdk-17-jre-headless maven || return 1
  home="$TSMICRO_CACHE_DIR/kafka-$version"
  mkdir -p "$TSMICRO_CACHE_DIR" || return 1
  tsmicro_kafka_libs "$home" && tsmicro_kafka_launcher "$home" || return 1
  if tsmicro_port_open 9092; then
    echo "kafka: already on 127.0.0.1:9092"
  else
    # A fresh node every time: data an earlier run left is not reused.
    rm -rf "$TSMICRO_RUN_DIR/kafka/data" || return 1
    tsmicro_start_engine kafka 9092 90 "$TSMICRO_CACHE_DIR/bin/kafka-server" "$TSMICRO_RUN_DIR/kafka" 9092 9093 || return 1
  fi
  echo "kafka: Apache Kafka $version ready in $((SECONDS - started)) s"
}

tsmicro_setup_kafka
