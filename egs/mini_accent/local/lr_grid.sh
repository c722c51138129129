#!/usr/bin/env bash
# The adaptation learning rate's grid (README.md, "Development measurements"): every system trained once more
# (seed 1) at one more lr, on the base, router and source gate of a finished run, into exp_lr<lr>; then the
# best dev_accent loss of every system at every lr measured so far (local/lr_table.py). Dev only: nothing here
# reads a test set. A system's chosen lr goes into conf/systems/<system>.yaml (optim.lr).
#   local/lr_grid.sh 4e-3                       # every system at 4e-3
#   local/lr_grid.sh 8e-3 "lora mole_top1"      # some systems
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 <lr> [\"<system> ...\"]" >&2; exit 1; }
lr=$1
systems=${2:-all}
out=exp_lr$lr
for dir in exp/base/best.pt exp/router/best.pt exp/gate/overrides.txt; do
  [ -f "$dir" ] || { echo "$0: $dir is missing: run ./run.sh --stop-stage 5 first (the grid reuses its stages 0-4 and source gate)" >&2; exit 1; }
done
mkdir -p "$out/gate"
for dir in lm base router ngram; do [ -e "$out/$dir" ] || ln -s "../exp/$dir" "$out/$dir"; done
cp exp/gate/overrides.txt "$out/gate/overrides.txt"  # the run's dev-chosen source gate, for every system
./run.sh --stage 5 --stop-stage 5 --systems "$systems" --source-gates "" --exp-dir "$out" \
  --extra-train-args "--override optim.lr=$lr"
. ./path.sh
python local/lr_table.py exp exp_lr*
