#!/usr/bin/env bash
# Top-level entry point: runs the default recipe, egs/mini_accent, passing every argument through, and
# installs on first use:
#   ./run.sh                           # the whole default recipe, end to end, on CPU
#   ./run.sh --stage 3 --stop-stage 5  # some of its stages
# The recipe reads and checks its options first and only then, asked by HDMOLE_INSTALL=true, runs
# tools/install.sh when the install is not complete: --help or a bad option answers at once and installs
# nothing (egs/TEMPLATE/recipe_common.sh, install_if_asked).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$top/egs/mini_accent"
HDMOLE_INSTALL=true exec ./run.sh "$@"
