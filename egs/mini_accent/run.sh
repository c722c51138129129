#!/usr/bin/env bash
# egs/mini_accent: synthetic multi-accent Mandarin, end to end on a CPU (the project's default recipe).
#   0 corpus (local/make_corpus.py)  1 features  2 tokenizer + text-only LM  3 base LLM-ASR (standard
#   Mandarin)  4 router pre-training  5 adaptation, one exp dir per system  6 decoding  7 scoring + RESULTS.md
# Stages 1-7 are egs/TEMPLATE/hdmole.sh, shared with every recipe; the systems are ../../conf/systems/.
#   ./run.sh                              # everything
#   ./run.sh --stage 5 --systems hdmole   # one more system after stage 4
#   ./run.sh --fast true                  # a tiny corpus and model: the whole recipe in a few minutes
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
. ../TEMPLATE/recipe_common.sh  # the preamble every recipe shares: systems, invocation record, stages 1-7

stage=0
stop_stage=7
nj=2
systems=all       # or a list: "lora hdmole" (python -m hdmole.bin.systems all lists them)
fast=false        # tiny corpus + tiny model (tests, smoke runs); its outputs go to *_fast dirs
beam=4            # decoding beam: 4 measured 6.6 CER points better than greedy on the base model
ngram_order=4     # character 4-gram of the LM text (KenLM), shallow-fused into every system's beam search
ngram_weight=0.3  # fusion weight, chosen on dev_std (README.md, "Development measurements")
seeds=1           # stage 5: every system trained with seeds 1..N (mean and spread in RESULTS.md)
pitch_norm_vars=true   # log F0 in units of each utterance's own robust spread: adopted on dev (README.md, "Pitch range normalised per utterance")
source_gates="0 1.5 hard"  # stage 5: HDMoLE's source gate, chosen on dev_accent from this grid ("" = no gate)
jobs=2            # stages 5-6: two systems side by side, one thread each (small models use a 2nd thread poorly)
decode_nj=1       # decoding jobs through cmd.sh's decode_cmd, each on 1/N of every test set
data_dir=""       # default: data (fast: data_fast)
dump_dir=""       # default: dump (fast: dump_fast)
exp_dir=""        # default: exp (fast: exp_fast)
extra_train_args=""  # appended to every training call, e.g. "--override optim.max_steps=300" (tests)
report_args="--resample-speakers"    # extra hdmole.bin.report arguments; the default adds intervals over the test speakers too
help_message="Usage: ./run.sh [options]   (see the header of this file and README.md)"
. utils/parse_options.sh
utils/check_stage_range.sh "$stage" "$stop_stage" 7 || exit 1
utils/check_counts.sh --seeds "$seeds" --jobs "$jobs" --nj "$nj" --decode-nj "$decode_nj" || exit 1
install_if_asked  # ./run.sh at the top: installs on first use, after the options are checked
. ./path.sh

resolve_systems

corpus_conf=conf/corpus.yaml
train_args=""
suffix=""
results_dir=.
if $fast; then
  suffix=_fast
  corpus_conf=conf/corpus_fast.yaml
  train_args="--override model=conf/model_fast.yaml --override optim.max_steps=6 --override optim.warmup_steps=2"
  train_args+=" --override checkpoint.every_steps=3 --override data.max_frames=4000"
fi
train_args+="${extra_train_args:+ $extra_train_args}"
data_dir=${data_dir:-data$suffix}
dump_dir=${dump_dir:-dump$suffix}
exp_dir=${exp_dir:-exp$suffix}
$fast && results_dir=$exp_dir
record_invocation "$exp_dir"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  start=$SECONDS
  python local/make_corpus.py --out "$data_dir" --nj "$nj" --config "$corpus_conf"
  printf '0\tcorpus\t%s\n' "$((SECONDS - start))" >>"$exp_dir/stage_times.tsv"
fi

# accents.txt: the source domain on line 1 (its test set is test_std), then one test set per target accent.
accents=$(tail -n +2 "$data_dir/accents.txt" 2>/dev/null || true)
[ -n "$accents" ] || [ "$stop_stage" -lt 1 ] || { echo "run.sh: $data_dir/accents.txt is missing: run stage 0 first" >&2; exit 1; }
accent_tests=$(for a in $accents; do printf 'test_%s ' "$a"; done)

run_shared_stages --nj "$nj" \
  --source-train train_std --source-dev dev_std --target-train train_accent --target-dev dev_accent \
  --std-test test_std --accent-tests "$accent_tests" \
  --lm-text "$data_dir/lm_train.txt" --lm-dev-text "$data_dir/lm_dev.txt" --lm-lexicon "$data_dir/lexicon.txt" \
  --data-dir "$data_dir" --dump-dir "$dump_dir" --exp-dir "$exp_dir" --results-dir "$results_dir" \
  --pitch true --pitch-norm-vars "$pitch_norm_vars" --ctc-text phones \
  --ngram-order "$ngram_order" --ngram-weight "$ngram_weight" --llm-only-beam 1 --seeds "$seeds" --jobs "$jobs" \
  --source-gates "$source_gates" \
  --beam "$beam" --decode-nj "$decode_nj" --train-args "$train_args" --report-args "$report_args"
