#!/usr/bin/env bash
# Sets up everything hdmole needs on a fresh machine:
#   1. the Debian packages the default recipe uses to make speech (espeak-ng, sox), SLURM for a test
#      (slurm-wlm) and those KenLM builds with;
#   2. tools/venv: a Python >= 3.11 virtual environment with every package pinned in
#      tools/requirements.txt, plus espnet (see below) and the hdmole package in editable mode;
#   3. KenLM: its Python module in the venv, lmplz and build_binary in tools/kenlm/bin.
# Idempotent: once a venv is complete (its stamp matches the pins), a second run only checks and exits.
#
# Usage: tools/install.sh [--force]     (--force reinstalls the Python packages)
#        tools/install.sh --check       (exit 0 if the install is complete, 1 if not; changes nothing)
# Env:   PYTHON=/path/to/python3.11     (the interpreter the venv is made from; default: python3.11 or python3)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$top/tools/venv
requirements=$top/tools/requirements.txt
log=$top/tools/install.log
stamp=$venv/.hdmole-installed

# espnet 202511 pins setuptools<74, which conflicts with the torch==2.13.0 stack, and espnet 202609+
# needs Python >= 3.12. We install espnet 202511 with --no-deps: the only modules we import
# (espnet2.asr.encoder.conformer_encoder and what it imports) need nothing beyond torch, numpy and
# typeguard, all pinned in tools/requirements.txt. We never import espnet's DefaultFrontend (it needs
# torchaudio, broken with torch 2.13 here); features come from kaldi-native-fbank instead.
espnet_version=202511
# KenLM (n-gram LMs for shallow fusion): the Python module (queries) from its PyPI source, and lmplz /
# build_binary (estimation) compiled with CMake from the same source into tools/kenlm/bin, as ESPnet's
# and WeNet's installers build them. Debian ships no KenLM; PyPI has no wheel for Python 3.11.
kenlm_version=0.3.0

force=false
check_only=false
[ $# -le 1 ] || { echo "$0: one option at most, not '$*' (try --help)" >&2; exit 2; }
case "${1:-}" in
  --force) force=true ;;
  --check) check_only=true ;;
  "") ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "$0: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "tools/install.sh: ERROR: $*" >&2; exit 1; }

# The stamp names what the venv was made from (the pins, pyproject.toml, espnet and KenLM versions): the
# install is complete when it matches and the venv's python and KenLM's lmplz are there.
want=$(cat "$requirements" "$top/pyproject.toml" | sha1sum | cut -d' ' -f1)-espnet$espnet_version-kenlm$kenlm_version
install_complete() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] && [ -x "$top/tools/kenlm/bin/lmplz" ]
}
# --check: what ./run.sh and tools/run_tests.sh ask before they start the installer (no apt, no pip).
if $check_only; then install_complete; exit; fi

# ---- 1. Debian packages -----------------------------------------------------------------------
# espeak-ng and sox make the default recipe's speech; slurm-wlm is the one-node SLURM cluster that
# tests/test_slurm_cluster.py starts to run utils/slurm.pl for real (it pulls in munge, which that test
# needs only with Slurm >= 23.11); the rest builds KenLM (section 3).
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
for daemon in slurmctld slurmd sbatch; do  # the daemons are in /usr/sbin, not on a user's PATH
  command -v "$daemon" >/dev/null 2>&1 || [ -x "/usr/sbin/$daemon" ] || { missing+=(slurm-wlm); break; }
done
command -v sox >/dev/null 2>&1 || missing+=(sox)
# a font with CJK glyphs: the report's plots label accents with their names, Chinese ones too (hdmole/report/plots.py)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
for header in boost/program_options.hpp:libboost-program-options-dev boost/thread.hpp:libboost-thread-dev \
              boost/system/error_code.hpp:libboost-system-dev boost/test/unit_test.hpp:libboost-test-dev \
              zlib.h:zlib1g-dev bzlib.h:libbz2-dev lzma.h:liblzma-dev; do
  [ -e "/usr/include/${header%%:*}" ] || missing+=("${header#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools/install.sh: installing Debian packages: ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >>"$log" 2>&1 \
      || die "apt-get could not install ${missing[*]} (details in $log)"
  else
    die "missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}"
  fi
fi

# ---- 2. Python virtual environment -------------------------------------------------------------
if ! $force && install_complete; then
  echo "tools/install.sh: $venv is complete (delete it or pass --force to reinstall)"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  python=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
  [ -n "$python" ] || die "no python3 found; install Python >= 3.11 or set PYTHON=/path/to/python3.11"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is $("$python" -V 2>&1); hdmole needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"
  echo "tools/install.sh: creating $venv with $("$python" -V 2>&1)"
  "$python" -m venv "$venv" || die "could not create the venv (on Debian: apt-get install python3-venv)"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

# Names the package that failed, from pip's own messages, so the user knows what to look at.
pip_failed() {
  local what
  what=$(grep -hoE "(No matching distribution found for|Could not find a version that satisfies the requirement|Failed building wheel for|Failed to build) [^ ]+" "$log" | tail -1 || true)  # none found: still die below
  die "pip failed while installing ${1}${what:+: $what} (full log: $log)"
}

echo "tools/install.sh: installing pinned Python packages (log: $log)"
: >"$log"
pip install --upgrade pip >>"$log" 2>&1 || pip_failed pip
pip install -r "$requirements" >>"$log" 2>&1 || pip_failed "tools/requirements.txt"
pip install --no-deps "espnet==$espnet_version" >>"$log" 2>&1 || pip_failed "espnet==$espnet_version"
pip install --no-deps --no-build-isolation -e "$top" >>"$log" 2>&1 || pip_failed "hdmole (editable)"

# ---- 3. KenLM ------------------------------------------------------------------------------------
pip install "kenlm==$kenlm_version" >>"$log" 2>&1 || pip_failed "kenlm==$kenlm_version"
kenlm_dir=$top/tools/kenlm
if [ ! -x "$kenlm_dir/bin/lmplz" ] || [ "$(cat "$kenlm_dir/.version" 2>/dev/null)" != "$kenlm_version" ]; then
  echo "tools/install.sh: building KenLM's lmplz (a few minutes; log: $log)"
  # tools/kenlm may be a link to a KenLM built elsewhere (a shared install): remove the link itself and
  # build here, never delete through it (rm -rf on a link's contents would empty the other install).
  if [ -L "$kenlm_dir" ]; then
    echo "tools/install.sh: $kenlm_dir is a link to $(readlink "$kenlm_dir") without KenLM $kenlm_version: removing the link (not what it points to) and building KenLM here"
    rm -f "$kenlm_dir"
  fi
  rm -rf "$kenlm_dir" && mkdir -p "$kenlm_dir/src" "$kenlm_dir/bin"
  pip download --no-deps --no-binary kenlm "kenlm==$kenlm_version" -d "$kenlm_dir/src" >>"$log" 2>&1 \
    || pip_failed "kenlm==$kenlm_version (source for lmplz)"
  tar -xzf "$kenlm_dir/src/kenlm-$kenlm_version.tar.gz" -C "$kenlm_dir/src"
  build=$kenlm_dir/src/kenlm-$kenlm_version/build
  mkdir -p "$build"
  { (cd "$build" && cmake .. -DCMAKE_BUILD_TYPE=Release -DENABLE_PYTHON=OFF && make -j "$(nproc)" lmplz build_binary) \
      && cp "$build/bin/lmplz" "$build/bin/build_binary" "$kenlm_dir/bin/"; } >>"$log" 2>&1 \
    || die "building KenLM's lmplz failed (see the end of $log)"
  rm -rf "$kenlm_dir/src"
  echo "$kenlm_version" >"$kenlm_dir/.version"
fi

# A last check that what the recipes import really imports.
"$venv/bin/python" - >>"$log" 2>&1 <<'EOF' || die "the installed packages do not import (see the end of $log)"
import torch, transformers, kaldi_native_fbank, kaldiio, sentencepiece, jiwer, yaml, tqdm, matplotlib, pypinyin, kenlm
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
import hdmole
assert torch.__version__.startswith("2.13.0"), torch.__version__
EOF
echo "$want" >"$stamp"
echo "tools/install.sh: done ($venv)"
