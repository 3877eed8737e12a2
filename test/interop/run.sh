#!/usr/bin/env bash
# npm run test:interop: the interop suite (node's test runner), then its matrix; exits as the suite did.
set -uo pipefail
cd "$(dirname "$0")/../.."
TSMICRO_INTEROP_MATRIX=$(mktemp "${TMPDIR:-/tmp}/tsmicro-interop-matrix.XXXXXX")
export TSMICRO_INTEROP_MATRIX
files=("$@")
((${#files[@]})) || files=(test/interop/*.test.ts)
MICRO_LOG_LEVEL=${MICRO_LOG_LEVEL:-warn} node --import tsx --test --test-concurrency=1 --test-timeout=180000 "${files[@]}"
rc=$?
node --import tsx -e 'import("./test/interop/peers.ts").then((m) => console.log(m.formatMatrix(process.env.TSMICRO_INTEROP_MATRIX)))'
rm -f "$TSMICRO_INTEROP_MATRIX"
exit $rc
