#!/usr/bin/env bash
# egs/kespeech: adapt a pre-trained LLM-based ASR model (Whisper encoder -> projector -> Qwen2) from
# standard Mandarin (AISHELL-1, source domain) to the KeSpeech subdialects (target domain), with every
# comparison system of the HDMoLE tables. README.md says what to download, how long each stage takes
# and what to expect.
#
#   0 data     KeSpeech v1.0 + AISHELL-1 -> Kaldi data dirs with utt2accent (local/prepare_data.py)
#   1-7        the shared stages of ../TEMPLATE/hdmole.sh: features (Whisper log-mel), lm (skipped: the
#              LLM is pre-trained), base (projector on AISHELL-1), router pre-training, adaptation (every
#              system of ../../conf/systems), decode, report
#
#   ./run.sh --stage 0 --stop-stage 0 --kespeech-root /data/KeSpeech --aishell-root /data/aishell
#   ./run.sh --stage 1 --model small --ngpu 1
#   ./run.sh --stage 3 --model large --ngpu 8
set -euo pipefail
cd "$(dirname "$0")"  # not readlink -f: a linked copy of the recipe keeps its own data/, dump/, exp/
. ../TEMPLATE/recipe_common.sh  # the preamble every recipe shares: systems, invocation record, stages 1-7
. ./path.sh
. ./db.sh

stage=0
stop_stage=7
ngpu=0                      # >0: training with torchrun on that many GPUs, decoding on the GPU
num_nodes=1                 # >1: training on several nodes, the same command on each (README.md, "Clusters"):
node_rank=0                 #   --node-rank R --master-addr HOST [--master-port P], or --rdzv-endpoint HOST:PORT
master_addr=""
master_port=29500
rdzv_endpoint=""
nj=8                        # parallel jobs for feature extraction (and CPU decoding)
kespeech_root=$KESPEECH     # defaults in db.sh
aishell_root=$AISHELL
model=large                 # large (whisper-large-v3 + Qwen2-7B) | small (whisper-small + Qwen2-0.5B)
model_conf=""               # a model YAML; default conf/model_<model>.yaml
num_mel_bins=""             # default: the encoder's (local/model_info.py)
systems=all                 # or a list: "lora hdmole" (python -m hdmole.bin.systems all lists them)
std_test=test_aishell
accent_tests="test_Beijing test_Southwestern test_Zhongyuan test_Northeastern test_Lan-Yin test_Jiang-Huai test_Ji-Lu test_Jiao-Liao"
eval_sets="test_Mandarin dev_phase1 dev_phase2"  # decoded and scored too, in no average: KeSpeech's Mandarin test
                            #   set (pooled with the accent sets into the whole KeSpeech test set) and dev phases
exp_dir=""                  # default exp/<model config name>
beam=1
feats_type=raw              # raw: Whisper log-mel computed by the data loader (no ~300 GB of dumps); fbank: dumped
decode_nj=""                # decoding jobs through cmd.sh's decode_cmd, each on 1/N of every test set (and, with
                            #   --ngpu, on a card of its own: run.pl --gpu 1); default: --ngpu, or 1 on the CPU
loader_workers=4            # with --ngpu: data loader workers of each decoding job, eval_router and routing_stats
decode_batch_frames=20000
train_args=""               # extra hdmole.bin.train arguments, e.g. "--override optim.max_steps=100"
help_message="Usage: $0 [options]  (run inside egs/kespeech; see README.md)"
. utils/parse_options.sh
utils/check_stage_range.sh "$stage" "$stop_stage" 7 || exit 1

log() { echo "$(date '+%F %T') [run.sh] $*" >&2; }
[ -n "$model_conf" ] || model_conf=conf/model_${model}.yaml
[ -f "$model_conf" ] || { log "ERROR: model config $model_conf not found (--model large|small or --model-conf FILE)"; exit 1; }
[ -n "$exp_dir" ] || exp_dir=exp/$(basename "$model_conf" .yaml)
resolve_systems
record_invocation "$exp_dir"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: data dirs from $kespeech_root (KeSpeech) and $aishell_root (AISHELL-1)"
  python local/prepare_data.py --kespeech-root "$kespeech_root" --aishell-root "$aishell_root" --out data \
    --text-cleaning conf/text_cleaning.yaml
  for dir in data/*/; do
    [ -f "$dir/wav.scp" ] || continue
    utils/validate_data_dir.sh --accents data/accents.txt "$dir"
  done
  log "stage 0 done: $(ls -d data/*/ | wc -l) data dirs; kept/dropped per subdialect in data/local/prep_summary.md"
fi
[ "$stop_stage" -ge 1 ] || exit 0

# The features follow the encoder (Whisper log-mel with its number of mel bins), so each feature type
# gets its own copy of the data dirs (data/whisper<bins>/<set>, as Kaldi's data/<set>_hires) and dump
# dir: the small and the large model can be run side by side.
info=$(python local/model_info.py "$model_conf")
tokenizer=$(echo "$info" | sed -n 's/^tokenizer=//p')
[ -n "$num_mel_bins" ] || num_mel_bins=$(echo "$info" | sed -n 's/^num_mel_bins=//p')
feat_data=data/whisper$num_mel_bins
mkdir -p "$feat_data"
for dir in data/*/; do
  [ -f "$dir/wav.scp" ] || continue
  utils/sync_data_dir.sh "$dir" "$feat_data/$(basename "$dir")"  # a changed set loses its features there
done
[ -f data/accents.txt ] && cp data/accents.txt "$feat_data/accents.txt"

decode_args="" eval_args=""
if [ "$ngpu" -gt 0 ]; then
  decode_args="--device cuda --num-workers $loader_workers"
  eval_args="--device cuda --num-workers $loader_workers"
fi
[ -n "$decode_nj" ] || decode_nj=$(( ngpu > 0 ? ngpu : 1 ))
# RESULTS.md: the accent CER both as the mean over the subdialects (macro, the paper's) and pooled over their
# characters (micro), and KeSpeech's whole test set (Mandarin + the subdialects, each utterance decoded once);
# the intervals of the differences also with the test speakers resampled (utt2spk; KeSpeech's test sets have many).
pooled=""
[[ " $eval_sets " == *" test_Mandarin "* ]] && pooled="--pooled KeSpeech=test_Mandarin,$(echo "$accent_tests" | tr -s ' ' ',')"
report_args="--micro-average --resample-speakers $pooled"
log "model $model_conf, tokenizer $tokenizer, Whisper log-mel with $num_mel_bins bins, exp dir $exp_dir"
run_shared_stages --ngpu "$ngpu" --nj "$nj" --num-nodes "$num_nodes" --node-rank "$node_rank" \
  --master-addr "$master_addr" --master-port "$master_port" --rdzv-endpoint "$rdzv_endpoint" \
  --source-train train_aishell --source-dev dev_aishell \
  --target-train train_kespeech --target-dev dev_kespeech \
  --std-test "$std_test" --accent-tests "$accent_tests" --eval-sets "$eval_sets" --report-args "$report_args" \
  --tokenizer-conf "$tokenizer" \
  --feats-type "$feats_type" --feature-type whisper --num-mel-bins "$num_mel_bins" --use-cmvn false \
  --data-dir "$feat_data" --dump-dir "dump/whisper$num_mel_bins" --exp-dir "$exp_dir" \
  --beam "$beam" --decode-nj "$decode_nj" --decode-batch-frames "$decode_batch_frames" --decode-args "$decode_args" \
  --eval-args "$eval_args" \
  --train-args "--override model=$model_conf $train_args"
