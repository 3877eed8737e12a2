# shellcheck shell=bash
# Sourced by the CI entry: makes sure the Google Pub/Sub emulator — the one that comes with the
# machine's Google Cloud CLI (component pubsub-emulator, a Java program) — runs on 127.0.0.1:8085,
# and links its launcher to $TSMICRO_CACHE_DIR/bin/cloud-pubsub-emulator, where the tests find it
# to start emulators of their own. The emulator keeps everything in memory; it runs in
# $TSMICRO_RUN_DIR/pubsub (log and pid there too). Nothing is downloaded. Idempotent, no prompts,
# every wait bounded. Being sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# The emulator's folder: $TSMICRO_PUBSUB_EMULATOR_HOME, else the one next to the gcloud on PATH.
tsmicro_pubsub_emulator_home() {
  if [[ -n ${TSMICRO_PUBSUB_EMULATOR_HOME:-} ]]; then echo "$TSMICRO_PUBSUB_EMULATOR_HOME"; return 0; fi
  local gcloud
  gcloud=$(command -v gcloud) || return 1
  gcloud=$(readlink -f "$gcloud") || return 1
  echo "$(dirname "$(dirname "$gcloud")")/platform/pubsub-emulator"
}

tsmicro_setup_pubsub() {
  local started=$SECONDS home launcher jar version
  home=$(tsmicro_pubsub_emulator_home) || { echo "pubsub: the Google Cloud CLI is not installed (no gcloud on PATH)" >&2; return 1; }
  launcher="$home/bin/cloud-pubsub-emulator"
  if [[ ! -x $launcher ]]; then
    echo "pubsub: the Pub/Sub emulator is not installed ($launcher is missing): install the Google Cloud CLI component" \
      "pubsub-emulator (apt-get install google-cloud-cli-pubsub-emulator, or gcloud components install pubsub-emulator)" >&2
    return 1
  fi
  command -v java >/dev/null || { echo "pubsub: the Pub/Sub emulator needs Java, and no java is on PATH" >&2; return 1; }
  jar=$(compgen -G "$home/lib/cloud-pubsub-emulator-*.jar" | head -n 1) || jar=""
  version=${jar##*/cloud-pubsub-emulator-}
  version=${version%-all.jar}
  mkdir -p "$TSMICRO_CACHE_DIR/bin" "$TSMICRO_RUN_DIR/pubsub" && ln -sfn "$launcher" "$TSMICRO_CACHE_DIR/bin/cloud-pubsub-emulator" || return 1
  # The launcher execs java, so the recorded pid is the emulator's; it runs in its folder under $TSMICRO_RUN_DIR.
  (cd "$TSMICRO_RUN_DIR/pubsub" && tsmicro_start_engine pubsub 8085 90 "$launcher" --host=127.0.0.1 --port=8085) || return 1
  echo "pubsub: emulator ${version:-(version unknown)} (Google Cloud CLI $(cat "$home/../../VERSION" 2>/dev/null || echo '?')) on 127.0.0.1:8085; setup took $((SECONDS - started)) s"
}

tsmicro_setup_pubsub
