# Sourced by every recipe (egs/*/run.sh) and by tools/run_tests.sh: the environment hdmole runs in.
HDMOLE_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)  # recipes link to this file
export HDMOLE_ROOT
if [ ! -f "$HDMOLE_ROOT/tools/venv/bin/activate" ]; then
  echo "path.sh: $HDMOLE_ROOT/tools/venv is missing; run $HDMOLE_ROOT/tools/install.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$HDMOLE_ROOT/tools/venv/bin/activate"
export PYTHONPATH=$HDMOLE_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PATH=$HDMOLE_ROOT/utils:$HDMOLE_ROOT/tools/kenlm/bin:$PATH  # KenLM's lmplz (tools/install.sh)
# Kaldi convention: byte-order sorting everywhere. Python switches to UTF-8 mode under the C locale
# (PEP 538/540); PYTHONUTF8 makes that explicit so Chinese text is read and written as UTF-8.
export LC_ALL=C PYTHONUTF8=1
export PYTHONUNBUFFERED=1
