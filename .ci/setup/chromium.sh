# shellcheck shell=bash
# Sourced by the CI entry: the dashboard test drives Debian's chromium (/usr/bin/chromium) through
# playwright-core, never a browser downloaded by `playwright install`. Installs it when missing;
# idempotent, no prompts. Being sourced, it never exits the caller's shell: failures return non-zero.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

tsmicro_apt_install chromium && echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
