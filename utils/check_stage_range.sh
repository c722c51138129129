#!/usr/bin/env bash
# Checks a recipe's --stage / --stop-stage before it writes anything (run_commands.txt, exp/), so that
# a typo is an error, not a run that silently does nothing and is still recorded as a run.
#   utils/check_stage_range.sh <stage> <stop-stage> <last-stage>
# Exits 1 with a message naming the fix when either is not a whole number, when --stage is past
# <last-stage>, or when --stage comes after --stop-stage. A --stop-stage past the last stage is
# fine (Kaldi and ESPnet users write --stop-stage 100 for "to the end").
[ $# -eq 3 ] || { echo "Usage: $0 <stage> <stop-stage> <last-stage>" >&2; exit 1; }
stage=$1 stop_stage=$2 last=$3
for pair in "--stage:$stage" "--stop-stage:$stop_stage"; do
  opt=${pair%%:*} value=${pair#*:}
  if ! [[ "$value" =~ ^[0-9]+$ ]]; then
    echo "run.sh: $opt '$value' is not a stage number. Fix: give a number from 0 to $last (see the stage list at the top of run.sh)" >&2
    exit 1
  fi
done
if [ "$stage" -gt "$last" ]; then
  echo "run.sh: --stage $stage is past the last stage ($last), so no stage would run. Fix: give a number from 0 to $last" >&2
  exit 1
fi
if [ "$stage" -gt "$stop_stage" ]; then
  echo "run.sh: --stage $stage comes after --stop-stage $stop_stage, so no stage would run. Fix: --stage N --stop-stage M with N <= M" >&2
  exit 1
fi
exit 0
