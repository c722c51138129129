#!/usr/bin/env bash
# The stages every hdmole recipe shares (as ESPnet's egs2/TEMPLATE/asr1/asr.sh): a recipe's run.sh
# prepares its data dirs (its stage 0, corpus-specific, in local/) and then calls this script from
# the recipe directory with its set names and configs.
#
#   1 features   fbank for every set (dump/fbank/<set>), global CMVN on the source training set; with
#                --feats-type raw only utt2num_frames + frontend.json per set (the loader computes the features)
#   2 lm         sentencepiece tokenizer on the LM text, then text-only LLM pretraining (if conf/lm.yaml)
#   3 base       source-domain LLM-ASR training (conf/base.yaml)
#   4 router     HDMoLE's router pre-training: the global accent router alone (conf/router.yaml), and its
#                evaluation (hdmole.bin.eval_router; in stage 6 with several nodes, which must not wait for it)
#   5 adapt      HDMoLE's adaptation: one exp dir per comparison system, conf/adapt.yaml composed with the
#                system's method, the top-level conf/systems/<system>.yaml (docs/configs.md)
#   6 decode     every system (and the base model) on every test set
#   7 report     scoring, routing statistics, RESULTS.md with plots
#
# Decoding runs as jobs through $decode_cmd (Kaldi's cmd.sh: the recipe's ./cmd.sh sets the runners,
# utils/run.pl on this machine or utils/slurm.pl on a SLURM cluster; --decode-cmd overrides it): with
# --decode-nj N every test set is split into N parts (utils/split_data.sh --per-utt), job JOB decodes
# part JOB of every set, and the parts are merged into <exp>/<model>/decode_<set>.
# A finished stage is skipped when run again (each step checks its own outputs); a stage whose
# inputs are missing says which stage to run first. Stage wall times go to exp/stage_times.tsv.
set -euo pipefail

stage=1
stop_stage=7
nj=2                       # parallel jobs for features and decoding
ngpu=0                     # >0: training runs with torchrun on that many GPUs (per node)
num_nodes=1                # >1: multi-node training (launcher.sh): the same command on every node, with
node_rank=0                #   its --node-rank (0 = the node that also runs features, decoding, report) and
master_addr=""             #   --master-addr HOST [--master-port P] (node 0's address), or
master_port=29500
rdzv_endpoint=""           #   --rdzv-endpoint HOST:PORT (torchrun's c10d rendezvous; --rdzv-id: default from the exp dir)
rdzv_id=""
systems=""                 # comparison systems to train and decode (python -m hdmole.bin.systems lists them)
table_systems=""           # every system of the recipe, in table order: the report keeps those already
                           # decoded, so adding one system (--systems hdmole) does not shrink RESULTS.md
source_train=train_std     # source-domain (standard) sets
source_dev=dev_std
target_train=train_accent  # target-domain (accent) adaptation sets
target_dev=dev_accent
std_test=test_std          # the source-domain test set
accent_tests=""            # the target-domain test sets
eval_sets=""               # more sets decoded and scored, shown in RESULTS.md in no average (e.g. dev sets)
report_args=""             # extra hdmole.bin.report arguments (e.g. --micro-average --pooled NAME=SET,SET)
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
decode_nj=1                # decoding jobs through $decode_cmd, each on 1/N of every test set (each loads the model)
train_cmd=utils/run.pl     # the job runners (as Kaldi's cmd.sh): the recipe's ./cmd.sh sets them (sourced
decode_cmd=utils/run.pl    # below), these options override it; e.g. --decode-cmd "utils/slurm.pl --mem 8G"
cuda_cmd=utils/run.pl
decode_batch_frames=20000
train_args=""              # extra arguments for every hdmole.bin.train call (e.g. --override ...)
feats_type=fbank           # fbank: features dumped once (dump/fbank/<set>); raw: wav.scp kept, the data loader
                           # computes the features (ESPnet's feats_type; no feature dumps: for corpora of 1,000s of hours)
feature_type=fbank         # fbank | whisper (Whisper's own log-mel, for a pre-trained Whisper encoder)
num_mel_bins=80            # whisper: 80, or 128 for whisper-large-v3
use_cmvn=true              # global CMVN from the source training set (false for Whisper log-mel: already scaled)
decode_args=""             # extra arguments for every hdmole.bin.decode call, last (e.g. --device cuda --nj 1)
eval_args=""               # extra arguments for hdmole.bin.eval_router and routing_stats (e.g. --device cuda --num-workers 4)
pitch=false                # fbank only: append 3 pitch features (Kaldi's fbank+pitch, for tonal languages)
pitch_norm_vars=false      # with --pitch: log F0 in units of the utterance's own log-F0 spread (hdmole.data.pitch)
ctc_text=""                # CTC on units of this data-dir file (e.g. pinyin: tonal syllables), not on the LLM's tokens;
                           # stage 2 lists the units of the source training set in <data>/lang/<ctc_text>.units
ngram_order=0              # >0: stage 2 builds a character n-gram LM (KenLM) of the LM text; stage 6 decodes with it
ngram_weight=0.3           # shallow-fusion weight (chosen on the dev sets: README.md of the recipe)
llm_only_beam=1            # with an n-gram: the LLM-only decoding (no external LM) of every system, for the table
                           # that shows the adaptation gaps without the n-gram; 0 skips it
seeds=1                    # stage 5: train every system with seeds 1..N (exp/<system>, exp/<system>_seed<k>)
source_gates=""            # stage 5: HDMoLE's source gate chosen on the target dev set from this grid (bias values,
                           # or 'hard'; hdmole.bin.choose_source_gate): hdmole trained with each in exp/gate/g<gate>,
                           # then every system with the dev-best; stages 6-7 decode the grid for the operating curve
jobs=1                     # stages 5 and 6: systems trained / decoded side by side (each with 1 CPU thread when > 1)
threshold_taus=""          # stage 7: the forced-tau grid of the threshold's dev curve (empty: hdmole.bin.threshold_curve's;
                           # each tau costs (layers + 1) passes over the dev set per thresholded system)
help_message="Usage: $0 [options] (run from a recipe directory; see egs/mini_accent/run.sh)"
# shellcheck disable=SC1091
[ -f ./cmd.sh ] && . ./cmd.sh
. utils/parse_options.sh

log() { echo "$(date '+%F %T') [$(basename "$0") stage ${current_stage:-?}] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() {  # need <path> <stage that makes it>
  [ -e "$1" ] || die "$1 is missing: run stage $2 first (--stage $2)"
}
need_input() {  # need_input <path> <option> <what reads it>: a file the recipe's own data preparation writes
  [ -e "$1" ] || die "$1 ($2) is missing: $3. The recipe's data preparation (its stage 0) writes it; \
or correct $2 (docs/adding_a_corpus.md, 'Inputs of the shared stages')"
}

case "$feats_type" in fbank|raw) ;; *) die "--feats-type must be fbank or raw, not '$feats_type'" ;; esac
$pitch_norm_vars && ! $pitch && die "--pitch-norm-vars true normalises the pitch features: it needs --pitch true"
utils/check_counts.sh --seeds "$seeds" --jobs "$jobs" --nj "$nj" --decode-nj "$decode_nj" || exit 1
accents=$data_dir/accents.txt
cmvn=$dump_dir/cmvn.json
mkdir -p "$exp_dir"
if [ -n "$tokenizer_conf" ]; then tokenizer=$tokenizer_conf; else
  tokenizer="{type: sentencepiece, model: $data_dir/lang/char.model}"; fi
cmvn_arg=$cmvn; $use_cmvn || cmvn_arg=null
data_args=(--override "data.accents=$accents" --override "data.cmvn=$cmvn_arg" --override "tokenizer=$tokenizer")
ctc_units=$data_dir/lang/$ctc_text.units
[ -n "$ctc_text" ] && data_args+=(--override "data.ctc_text=$ctc_text" --override "model.ctc_units=$ctc_units")
ngram=$exp_dir/ngram/char$ngram_order.arpa

# shellcheck disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/launcher.sh"
# shellcheck disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/decode_report.sh"  # stages 6 and 7
train_launcher "$exp_dir/check" >/dev/null || exit 1  # bad multi-node options stop here, before any stage

train() {  # train <config> <exp> [more hdmole.bin.train args]
  local config=$1 exp=$2 launcher; shift 2
  mapfile -t launcher < <(train_launcher "$exp")
  # shellcheck disable=SC2086
  "${launcher[@]}" --config "$config" --exp-dir "$exp" "${data_args[@]}" "$@" $train_args
}

parallel() {  # parallel <function> <arg>...: runs `<function> <arg>` for every arg, $jobs at a time
  local fn=$1 pids=() failed=0 pid; shift
  if [ "$jobs" -le 1 ]; then for arg in "$@"; do "$fn" "$arg"; done; return; fi
  for arg in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
    # one CPU thread each: small models scale poorly over threads, so N jobs x 1 thread beats 1 job x N threads
    OMP_NUM_THREADS=1 "$fn" "$arg" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" -eq 0 ] || die "a parallel job of $fn failed (see its log above and its exp dir)"
}

seed_dirs() {  # seed_dirs <system>: the exp dirs of its seeds
  local k
  echo "$1"
  for k in $(seq 2 "$seeds"); do echo "${1}_seed$k"; done
}

timed() {  # timed <stage> <name> <function>: runs a stage and appends its wall time
  local start=$SECONDS
  current_stage=$1; log "start: $2"
  "$3"
  printf '%s\t%s\t%s\n' "$1" "$2" "$((SECONDS - start))" >>"$exp_dir/stage_times.tsv"
  log "done: $2 ($((SECONDS - start)) s)"
}

all_sets() { echo "$source_train $source_dev $target_train $target_dev $std_test $accent_tests $eval_sets" | tr ' ' '\n' | awk 'NF && !s[$0]++'; }

stage_features() {
  for set in $(all_sets); do
    need "$data_dir/$set/wav.scp" 0
    local pitch_arg=(); $pitch && pitch_arg=(--pitch); $pitch_norm_vars && pitch_arg+=(--pitch-norm-vars)
    # raw: only utt2num_frames and frontend.json, in the data dir; the log goes to the exp dir, not dump/
    local feat_dir=$dump_dir/fbank/$set
    [ "$feats_type" = raw ] && feat_dir=$exp_dir/frontend/$set
    python -m hdmole.bin.compute_fbank --nj "$nj" --feature-type "$feature_type" --num-mel-bins "$num_mel_bins" \
      "${pitch_arg[@]}" --feats-type "$feats_type" --accents "$accents" "$data_dir/$set" "$feat_dir"
  done
  # skipped by compute_cmvn itself when made from the same features (recomputed after --pitch, new audio)
  if $use_cmvn; then python -m hdmole.bin.compute_cmvn "$data_dir/$source_train" "$cmvn"; fi
}

stage_lm() {
  is_first_node || { lm_train; return; }  # the tokenizer and n-gram are node 0's
  if [ -z "$tokenizer_conf" ]; then
    need_input "$lm_text" --lm-text "stage 2 trains the character tokenizer on it (one normalised sentence a line; \
with --tokenizer-conf, a pre-trained LLM's own tokenizer, it needs none)"
    python -m hdmole.bin.train_tokenizer "$lm_text" "$data_dir/lang/char"  # skipped when made from the same text
  fi
  if [ -n "$ctc_text" ]; then
    need_input "$data_dir/$source_train/$ctc_text" "--ctc-text $ctc_text" "stage 2 lists the CTC units of the \
source training set from it (a Kaldi table: utterance id, then space-separated units such as pinyin; one in every data dir)"
    python -m hdmole.bin.train_tokenizer --model-type units --text-file "$ctc_text" "$data_dir/$source_train" \
      "${ctc_units%.units}"
  fi
  if [ "$ngram_order" -gt 0 ]; then
    need_input "$lm_text" --lm-text "stage 2 builds the n-gram LM (--ngram-order $ngram_order) of it"
    python -m hdmole.bin.train_ngram --order "$ngram_order" --text "$lm_text" --out "$ngram"
  fi
  lm_train
}

lm_train() {
  if [ -f "$conf_dir/lm.yaml" ]; then
    local lexicon=()
    if [ -n "$lm_lexicon" ]; then
      need_input "$lm_lexicon" --lm-lexicon "the LM stage's homophone noise reads it ('char pron' lines)"
      lexicon=(--override "data.lm_prefix.lexicon=$lm_lexicon")
    fi
    need_input "$lm_text" --lm-text "the LM stage ($conf_dir/lm.yaml) trains the LLM on it"
    need_input "$lm_dev_text" --lm-dev-text "the LM stage ($conf_dir/lm.yaml) validates on it"
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

test_all() {  # one data dir with every test set, so routing is measured over every domain at once
  local all=$dump_dir/test_all
  [ "$feats_type" = raw ] && all=$data_dir/test_all  # raw writes nothing under dump/
  if [ ! -f "$all/utt2num_frames" ]; then
    # shellcheck disable=SC2046
    utils/combine_data.sh "$all" $(for s in $std_test $accent_tests; do echo "$data_dir/$s"; done) >/dev/null
    [ "$feats_type" = raw ] && cp "$data_dir/$std_test/frontend.json" "$all/"
  fi
  echo "$all"
}

stage_router() {
  need "$exp_dir/base/best.pt" 3
  train "$conf_dir/router.yaml" "$exp_dir/router" --override "init=[$exp_dir/base/best.pt]" \
    --override "data.train=$data_dir/$target_train" --override "data.dev=$data_dir/$target_dev"
  # With several nodes the other nodes go straight on to stage 5's torchrun, whose rendezvous would time out
  # while node 0 alone evaluated the router here: then stage 6 (node 0's) evaluates it.
  [ "$num_nodes" -le 1 ] || { log "router evaluation: in stage 6 (several nodes: nothing node 0's alone between trainings)"; return 0; }
  router_eval
}

router_eval() {  # accuracy, recall per domain and the confusion matrix, on the dev set and on every test set
  [ -f "$exp_dir/router/router_test_all.json" ] && return 0
  # shellcheck disable=SC2086
  python -m hdmole.bin.eval_router \
    --config "$exp_dir/router/config.yaml" --checkpoint "$exp_dir/base/best.pt" --checkpoint "$exp_dir/router/best.pt" \
    --accents "$accents" --data "$data_dir/$target_dev" --data "$(test_all)" --out "$exp_dir/router" $eval_args
}

stage_adapt() {
  need "$exp_dir/base/best.pt" 3
  need "$exp_dir/router/best.pt" 4
  [ -f "$conf_dir/adapt.yaml" ] || die "$conf_dir/adapt.yaml is missing: the recipe's adaptation settings (docs/configs.md)"
  local runs=() system k gate
  if [ -n "$source_gates" ]; then  # the gate first: every system trains with the one chosen on dev
    for gate in $source_gates; do runs+=("gate/g$gate:1"); done
    parallel adapt_one "${runs[@]}"
    runs=()
    python -m hdmole.bin.choose_source_gate --exp-dir "$exp_dir/gate" $source_gates >"$exp_dir/gate/overrides.txt" \
      || die "choosing the source gate failed"
  fi
  for system in $systems; do
    for k in $(seq 1 "$seeds"); do runs+=("$system:$k"); done
  done
  parallel adapt_one "${runs[@]}"
}

gate_args() {  # gate_args <dir>: the training overrides of the source gate (a grid point, or the dev-chosen one)
  local override
  case "$1" in
    gate/g*) python -m hdmole.bin.choose_source_gate --overrides-for "${1#gate/g}" ;;
    *) [ -f "$exp_dir/gate/overrides.txt" ] && cat "$exp_dir/gate/overrides.txt" ;;
  esac | while read -r override; do printf -- '--override\n%s\n' "$override"; done
}

reuse_chosen_gate() {  # reuse_chosen_gate <dir>: hdmole's first seed is the grid's run of the chosen gate
  # The same system, seed, gate and data: the grid has trained exactly what exp/hdmole would train, so it is
  # copied rather than trained twice; the training call below then finds it done (it checks that the config and
  # the inputs are the ones it would use, and says what differs if not).
  [ "$1" = hdmole ] && [ -f "$exp_dir/gate/chosen.json" ] || return 0
  [ -f "$exp_dir/hdmole/train_summary.json" ] && return 0
  local chosen
  chosen=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["gate"])' "$exp_dir/gate/chosen.json")
  [ -f "$exp_dir/gate/g$chosen/train_summary.json" ] || return 0
  log "hdmole (seed 1): the source gate's grid trained it already (exp dir $exp_dir/gate/g$chosen): copied"
  mkdir -p "$exp_dir/hdmole"
  cp -a "$exp_dir/gate/g$chosen/." "$exp_dir/hdmole/"
}

adapt_one() {  # adapt_one <system>:<seed> (or gate/g<gate>:1, HDMoLE with one source gate of the grid)
  local system=${1%%:*} k=${1##*:} dir=${1%%:*} gate=()
  [ "$k" -gt 1 ] && dir=${system}_seed$k
  mapfile -t gate < <(gate_args "$dir")
  [[ "$system" == gate/* ]] && system=hdmole
  reuse_chosen_gate "$dir"
  local args=("$conf_dir/adapt.yaml" "$exp_dir/$dir" --override "system=$system" --override "seed=$k" "${gate[@]}"
    --override "init=[$exp_dir/base/best.pt, $exp_dir/router/best.pt]"
    --override "data.train=$data_dir/$target_train" --override "data.dev=$data_dir/$target_dev"
    --override "data.encoder_cache_dir=$exp_dir/encoder_cache")  # the frozen encoder's outputs: encoded once, shared
  if [ "$jobs" -le 1 ]; then train "${args[@]}"; return; fi
  # side by side: the progress bars would interleave, so each job's console output goes to a file
  mkdir -p "$exp_dir/$dir"
  log "adapting $dir (console output: $exp_dir/$dir/console.log)"
  train "${args[@]}" >"$exp_dir/$dir/console.log" 2>&1 || { tail -5 "$exp_dir/$dir/console.log" >&2; return 1; }
}

names=(features lm base router adapt decode report)
for s in 1 2 3 4 5 6 7; do
  if [ "$stage" -le "$s" ] && [ "$stop_stage" -ge "$s" ]; then
    # Another node of a multi-node training joins the training calls only (stages 2-5).
    if ! is_first_node && { [ "$s" -eq 1 ] || [ "$s" -ge 6 ]; }; then
      current_stage=$s log "node $node_rank: skipped (node 0 runs it)"; continue
    fi
    timed "$s" "${names[$((s - 1))]}" "stage_${names[$((s - 1))]}"
  fi
done
