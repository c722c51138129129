#!/usr/bin/env bash
# Top-level entry point: installs on first use (tools/install.sh is idempotent and takes seconds
# once done), then runs the default recipe, egs/mini_accent, passing every argument through:
#   ./run.sh                           # the whole default recipe, end to end, on CPU
#   ./run.sh --stage 3 --stop-stage 5  # some of its stages
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$top/tools/install.sh"
cd "$top/egs/mini_accent"
exec ./run.sh "$@"
