#!/usr/bin/env bash
# Checks a recipe's counts (--seeds, --jobs, --nj, ...) before it writes or installs anything, so that
# `--seeds abc` or `--seeds 0` is an error, not a stage that quietly trains nothing and exits 0.
#   utils/check_counts.sh --seeds "$seeds" --jobs "$jobs" ...
# Exits 1 with a message naming the option and the fix when a value is not a whole number >= 1.
if [ $# -eq 0 ] || [ $(($# % 2)) -ne 0 ] || [ "$1" = --help ]; then
  echo "Usage: $0 --<option> <value> [--<option> <value> ...]: each value must be a whole number >= 1" >&2
  exit 1
fi
while [ $# -gt 0 ]; do
  if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$((10#$2))" -lt 1 ]; then
    echo "run.sh: $1 '$2' is not a whole number of at least 1. Fix: e.g. $1 1 (see the options at the top of run.sh)" >&2
    exit 1
  fi
  shift 2
done
exit 0
