#!/usr/bin/env bash
# The stages every hdmole recipe shares (as ESPnet's egs2/TEMPLATE/asr1/asr.sh): a recipe's run.sh
# prepares its data dirs (its stage 0, corpus-specific, in local/) and then calls this script from
# the recipe directory with its set names and configs.
#
#   1 features   fbank for every set (dump/fbank/<set>), global CMVN on the source training set
#   2 lm         sentencepiece tokenizer on the LM text, then text-only LLM pretraining (if conf/lm.yaml)
#   3 base       source-domain LLM-ASR training (conf/base.yaml)
#   4 router     HDMoLE's router pre-training: the global accent router alone (conf/router.yaml)
#   5 adapt      HDMoLE's adaptation: one exp dir per comparison system, conf/adapt.yaml composed with the
#                system's method, the top-level conf/systems/<system>.yaml (docs/configs.md)
#   6 decode     every system (and the base model) on every test set
#   7 report     scoring, routing statistics, RESULTS.md with plots
#
# A finished stage is skipped when run again (each step checks its own outputs); a stage whose
# inputs are missing says which stage to run first. Stage wall times go to exp/stage_times.tsv.
set -euo pipefail

stage=1
stop_stage=7
nj=2                       # parallel jobs for features and decoding
ngpu=0                     # >0: training runs with torchrun on that many GPUs
systems=""                 # comparison systems to train and decode (python -m hdmole.bin.systems lists them)
table_systems=""           # every system of the recipe, in table order: the report keeps those already
                           # decoded, so adding one system (--systems hdmole) does not shrink RESULTS.md
source_train=train_std     # source-domain (standard) sets
source_dev=dev_std
target_train=train_accent  # target-domain (accent) adaptation sets
target_dev=dev_accent
std_test=test_std          # the source-domain test set
accent_tests=""            # the target-domain test sets
lm_text=data/lm_train.txt  # text for the tokenizer and the LM stage
lm_dev_text=data/lm_dev.txt
lm_lexicon=""              # a lexicon (char pron) for the LM stage's homophone noise (data.lm_prefix in lm.yaml)
tokenizer_conf=""          # a tokenizer YAML mapping; empty: train a char sentencepiece model in stage 2 (lm)
conf_dir=conf
data_dir=data
dump_dir=dump
exp_dir=exp
results_dir=.              # RESULTS.md and its plots (results/) go here
beam=1                     # decoding beam (1 = greedy)
decode_nj=1                # decoding processes (each loads the model: 1 is best for small sets)
decode_batch_frames=20000
train_args=""              # extra arguments for every hdmole.bin.train call (e.g. --override ...)
feature_type=fbank         # fbank | whisper (Whisper's own log-mel, for a pre-trained Whisper encoder)
num_mel_bins=80            # whisper: 80, or 128 for whisper-large-v3
use_cmvn=true              # global CMVN from the source training set (false for Whisper log-mel: already scaled)
decode_args=""             # extra arguments for every hdmole.bin.decode call, last (e.g. --device cuda --nj 1)
help_message="Usage: $0 [options] (run from a recipe directory; see egs/mini_accent/run.sh)"
. utils/parse_options.sh

log() { echo "$(date '+%F %T') [$(basename "$0") stage ${current_stage:-?}] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() {  # need <path> <stage that makes it>
  [ -e "$1" ] || die "$1 is missing: run stage $2 first (--stage $2)"
}

accents=$data_dir/accents.txt
cmvn=$dump_dir/cmvn.json
mkdir -p "$exp_dir"
if [ -n "$tokenizer_conf" ]; then tokenizer=$tokenizer_conf; else
  tokenizer="{type: sentencepiece, model: $data_dir/lang/char.model}"; fi
cmvn_arg=$cmvn; $use_cmvn || cmvn_arg=null
data_args=(--override "data.accents=$accents" --override "data.cmvn=$cmvn_arg" --override "tokenizer=$tokenizer")

train() {  # train <config> <exp> [more hdmole.bin.train args]
  local config=$1 exp=$2; shift 2
  local launcher=(python -m hdmole.bin.train)
  [ "$ngpu" -gt 0 ] && launcher=(torchrun --standalone --nproc_per_node "$ngpu" -m hdmole.bin.train)
  # shellcheck disable=SC2086
  "${launcher[@]}" --config "$config" --exp-dir "$exp" "${data_args[@]}" "$@" $train_args
}

timed() {  # timed <stage> <name> <function>: runs a stage and appends its wall time
  local start=$SECONDS
  current_stage=$1; log "start: $2"
  "$3"
  printf '%s\t%s\t%s\n' "$1" "$2" "$((SECONDS - start))" >>"$exp_dir/stage_times.tsv"
  log "done: $2 ($((SECONDS - start)) s)"
}

all_sets() { echo "$source_train $source_dev $target_train $target_dev $std_test $accent_tests" | tr ' ' '\n' | awk 'NF && !s[$0]++'; }

stage_features() {
  for set in $(all_sets); do
    need "$data_dir/$set/wav.scp" 0
    python -m hdmole.bin.compute_fbank --nj "$nj" --feature-type "$feature_type" --num-mel-bins "$num_mel_bins" \
      --accents "$accents" "$data_dir/$set" "$dump_dir/fbank/$set"
  done
  if $use_cmvn; then [ -f "$cmvn" ] || python -m hdmole.bin.compute_cmvn "$data_dir/$source_train" "$cmvn"; fi
}

stage_lm() {
  if [ -z "$tokenizer_conf" ]; then
    need "$lm_text" 0
    [ -f "$data_dir/lang/char.model" ] || python -m hdmole.bin.train_tokenizer "$lm_text" "$data_dir/lang/char"
  fi
  if [ -f "$conf_dir/lm.yaml" ]; then
    local lexicon=()
    if [ -n "$lm_lexicon" ]; then need "$lm_lexicon" 0; lexicon=(--override "data.lm_prefix.lexicon=$lm_lexicon"); fi
    train "$conf_dir/lm.yaml" "$exp_dir/lm" --override "data.train=$lm_text" --override "data.dev=$lm_dev_text" \
      "${lexicon[@]}"
  else
    log "no $conf_dir/lm.yaml: the LLM is used as loaded (pre-trained), no LM stage"
  fi
}

base_init() { [ -f "$conf_dir/lm.yaml" ] && echo "[$exp_dir/lm/best.pt]" || echo "[]"; }

stage_base() {
  if $use_cmvn; then need "$cmvn" 1; fi
  [ -f "$conf_dir/lm.yaml" ] && need "$exp_dir/lm/best.pt" 2
  train "$conf_dir/base.yaml" "$exp_dir/base" --override "init=$(base_init)" \
    --override "data.train=$data_dir/$source_train" --override "data.dev=$data_dir/$source_dev"
}

stage_router() {
  need "$exp_dir/base/best.pt" 3
  train "$conf_dir/router.yaml" "$exp_dir/router" --override "init=[$exp_dir/base/best.pt]" \
    --override "data.train=$data_dir/$target_train" --override "data.dev=$data_dir/$target_dev"
}

stage_adapt() {
  need "$exp_dir/base/best.pt" 3
  need "$exp_dir/router/best.pt" 4
  [ -f "$conf_dir/adapt.yaml" ] || die "$conf_dir/adapt.yaml is missing: the recipe's adaptation settings (docs/configs.md)"
  for system in $systems; do
    train "$conf_dir/adapt.yaml" "$exp_dir/$system" --override "system=$system" \
      --override "init=[$exp_dir/base/best.pt, $exp_dir/router/best.pt]" \
      --override "data.train=$data_dir/$target_train" --override "data.dev=$data_dir/$target_dev"
  done
}

adapter_args() {  # the checkpoints to decode with: the base, then the system's own
  [ "$1" = base ] && return 0
  echo "--adapter $exp_dir/$1/best.pt"
}

stage_decode() {
  for system in base $systems; do
    need "$exp_dir/$system/best.pt" "$([ "$system" = base ] && echo 3 || echo 5)"
    local sets=()  # every test set in one call: the model is loaded once
    for set in $std_test $accent_tests; do
      need "$data_dir/$set/feats.scp" 1
      sets+=(--data "$data_dir/$set" --out "$exp_dir/$system/decode_$set")
    done
    # shellcheck disable=SC2046,SC2086
    python -m hdmole.bin.decode --config "$exp_dir/$system/config.yaml" --checkpoint "$exp_dir/base/best.pt" \
      $(adapter_args "$system") "${sets[@]}" --accents "$accents" --beam "$beam" \
      --batch-frames "$decode_batch_frames" --nj "$decode_nj" $decode_args
  done
}

report_systems() {  # table order: the known systems requested or already decoded, then any others requested
  local s out=""
  for s in $table_systems; do
    if [[ " $systems " == *" $s "* ]] || [ -f "$exp_dir/$s/decode_$std_test/text" ]; then out+=" $s"; fi
  done
  for s in $systems; do [[ " $out " == *" $s "* ]] || out+=" $s"; done
  echo "$out"
}

stage_report() {
  local all_test=$dump_dir/test_all report
  report=$(report_systems)
  # One data dir with every test set, so the routing statistics cover every accent.
  if [ ! -f "$all_test/feats.scp" ]; then
    # shellcheck disable=SC2086
    utils/combine_data.sh "$all_test" $(for s in $std_test $accent_tests; do echo "$data_dir/$s"; done) >/dev/null
  fi
  for system in base $report; do
    for set in $std_test $accent_tests; do
      need "$exp_dir/$system/decode_$set/text" 6
      python -m hdmole.bin.score --ref "$data_dir/$set" --hyp "$exp_dir/$system/decode_$set/text" \
        --accents "$accents" --out "$exp_dir/$system/decode_$set" 2>>"$exp_dir/score.log"
    done
    # --if-routed: a system without a mixture of experts (full_ft, lora) is skipped with a message.
    if [ "$system" != base ] && [ ! -f "$exp_dir/$system/routing_test_all.json" ]; then
      python -m hdmole.bin.routing_stats --if-routed \
        --config "$exp_dir/$system/config.yaml" --checkpoint "$exp_dir/base/best.pt" \
        --checkpoint "$exp_dir/$system/best.pt" --data "$all_test" --accents "$accents" \
        --out "$exp_dir/$system/routing_test_all.json"
    fi
  done
  local notes=()
  [ -f RESULTS.notes.md ] && notes=(--notes RESULTS.notes.md)
  [ -f "$exp_dir/run_commands.txt" ] && notes+=(--run-commands "$exp_dir/run_commands.txt")
  # shellcheck disable=SC2086
  python -m hdmole.bin.report --exp-dir "$exp_dir" --systems base $report --std-set "$std_test" \
    --accent-sets $accent_tests --routing-set test_all --stage-times "$exp_dir/stage_times.tsv" \
    --title "$(basename "$PWD"): results" --out "$results_dir/RESULTS.md" --plots-dir "$results_dir/results" "${notes[@]}"
}

names=(features lm base router adapt decode report)
for s in 1 2 3 4 5 6 7; do
  if [ "$stage" -le "$s" ] && [ "$stop_stage" -ge "$s" ]; then
    timed "$s" "${names[$((s - 1))]}" "stage_${names[$((s - 1))]}"
  fi
done
