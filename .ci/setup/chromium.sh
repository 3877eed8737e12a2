# shellcheck shell=bash
# Sourced by the CI entry: the dashboard test drives Debian's chromium (/usr/bin/chromium) through
# playwright-core, never a browser downloaded by `playwright install`. Installs it when missing;
# idempotent, no prompts. Being sourced, it never exits the caller's shell: failures return non-zero.

tsmicro_install_chromium() {
  if [[ -x /usr/bin/chromium ]]; then echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"; return 0; fi
  echo "chromium: installing Debian's chromium"
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    { echo "chromium: apt-get install chromium failed" >&2; return 1; }
  [[ -x /usr/bin/chromium ]] || { echo "chromium: installed, but /usr/bin/chromium is missing" >&2; return 1; }
}

tsmicro_install_chromium
