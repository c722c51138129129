#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): installs if needed, then runs the pytest suite.
# Extra arguments go to pytest, e.g. tools/run_tests.sh -k utils -x
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A complete install (its stamp matches the pins) is only checked, in well under a second.
"$top/tools/install.sh" --check || "$top/tools/install.sh"
cd "$top"
# shellcheck disable=SC1091
. ./path.sh
exec python -m pytest tests "$@"
