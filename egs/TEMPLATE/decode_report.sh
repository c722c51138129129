# Stages 6 (decode) and 7 (report) of ../TEMPLATE/hdmole.sh, sourced by it (not run): every decoded model and
# its test sets, the scoring, routing statistics, threshold curves and RESULTS.md. Uses hdmole.sh's options
# and helpers (need, die, parallel, seed_dirs, test_all, router_eval).

adapter_args() {  # the checkpoints to decode with: the base, then the system's own
  [ "$1" = base ] && return 0
  echo "--adapter $exp_dir/$1/best.pt"
}

decoded_dirs() {  # the base model, every seed of every system, and the source gate's grid
  local system gate
  echo base
  for system in $systems; do seed_dirs "$system"; done
  for gate in $source_gates; do echo "gate/g$gate"; done
}

decode_one() {  # decode_one <dir>: every decoding of every test set in one call per job (one model load per job)
  local dir=$1 set fusion="" passes=()
  need "$exp_dir/$dir/best.pt" "$([ "$dir" = base ] && echo 3 || echo 5)"
  for set in $std_test $accent_tests $eval_sets; do need "$data_dir/$set/utt2num_frames" 1; done
  if [ "$ngram_order" -gt 0 ]; then
    need "$ngram" 2
    fusion="--ngram ${ngram%.arpa}.bin --ngram-weight $ngram_weight"
  fi
  passes+=("decode --beam $beam $fusion")
  if speaker_routed "$dir"; then  # the online case: each speaker routed with its first k utterances only
    local k
    for k in 1 3 10; do passes+=("decode_first$k --beam $beam $fusion --speaker-first-k $k"); done
  fi
  # The LLM-only table has no row for the source gate's grid (its operating curve is of the fused decoding).
  if [ "$ngram_order" -gt 0 ] && [ "$llm_only_beam" -gt 0 ] && [[ "$dir" != gate/* ]]; then
    passes+=("decode_llm --beam $llm_only_beam")
  fi
  decode_jobs "$dir" "${passes[@]}"
}

speaker_routed() {  # speaker_routed <dir>: the system routes by speaker (global_router.pool: speaker)
  grep -q "pool: speaker" "$exp_dir/$1/config.yaml" 2>/dev/null
}

decode_jobs() {  # decode_jobs <dir> "<prefix> <decode options>"...: $decode_nj jobs through $decode_cmd, then merged
  # Each job runs every decoding ("pass": <exp>/<dir>/<prefix>_<set>) of its part of the sets in one process,
  # joined by hdmole.bin.decode's --then: Python starts and the model loads once per job, not once per decoding.
  local dir=$1 set n=$decode_nj threads=() split=(--per-utt) part spec prefix cmd=() first=true
  shift
  # By utterance: the model keeps no per-speaker state (global CMVN), and the parts come out even; a system
  # routed by speaker pools each speaker's utterances, so its parts hold whole speakers.
  if speaker_routed "$dir"; then split=(); fi
  # Jobs side by side on this machine share its cores; a cluster job uses the cores it was given.
  if [ "$jobs" -gt 1 ]; then threads=(--threads 1)
  elif [ "$n" -gt 1 ] && [[ "$decode_cmd" == *run.pl* ]]; then threads=(--threads "$(( $(nproc) / n > 1 ? $(nproc) / n : 1 ))"); fi
  for spec in "$@"; do
    prefix=${spec%% *}
    $first || cmd+=(--then)
    first=false
    # --encoder-cache-dir: every model adapted from the base shares its frozen encoder, so each test set is encoded
    # once (by the first model decoded) and loaded by the others; the hypotheses are the same bit for bit.
    # shellcheck disable=SC2046
    cmd+=(--config "$exp_dir/$dir/config.yaml" --checkpoint "$exp_dir/base/best.pt" --accents "$accents"
      --batch-frames "$decode_batch_frames" "${threads[@]}" --encoder-cache-dir "$exp_dir/encoder_cache"
      $(adapter_args "$dir"))
    for set in $std_test $accent_tests $eval_sets; do
      if [ "$n" -gt 1 ]; then
        utils/split_data.sh "${split[@]}" "$data_dir/$set" "$n"
        part=split$n; [ ${#split[@]} -gt 0 ] && part=split${n}utt
        cmd+=(--data "$data_dir/$set/$part/JOB" --out "$exp_dir/$dir/${prefix}_$set/split$n/JOB")
        # the merged output of an earlier run goes until the parts are merged again: complete or absent
        rm -f "$exp_dir/$dir/${prefix}_$set/"{text,rtf,decode_inputs.json}
      else
        cmd+=(--data "$data_dir/$set" --out "$exp_dir/$dir/${prefix}_$set")
      fi
    done
    # shellcheck disable=SC2206
    cmd+=(${spec#"$prefix"} $decode_args)
  done
  # shellcheck disable=SC2046,SC2086
  $decode_cmd JOB=1:"$n" "$exp_dir/$dir/log/decode.JOB.log" python -m hdmole.bin.decode "${cmd[@]}" \
    || die "decoding $dir failed (logs: $exp_dir/$dir/log/decode.*.log)"
  [ "$n" -gt 1 ] || return 0
  for spec in "$@"; do
    prefix=${spec%% *}
    for set in $std_test $accent_tests $eval_sets; do
      local out=$exp_dir/$dir/${prefix}_$set
      # shellcheck disable=SC2046
      python -m hdmole.bin.merge_decode --data "$data_dir/$set" --out "$out" $(for j in $(seq "$n"); do echo "$out/split$n/$j"; done)
    done
  done
}

stage_decode() {
  if [ -f "$exp_dir/router/best.pt" ]; then router_eval; fi  # not done in stage 4 by a multi-node run
  log "decoding $(decoded_dirs | wc -l) models ($jobs at a time, $decode_nj job(s) each through $decode_cmd; logs in <exp>/<model>/log/)"
  # shellcheck disable=SC2046
  parallel decode_one $(decoded_dirs)
}

report_systems() {  # table order: the known systems requested or already decoded, then any others requested
  local s out=""
  for s in $table_systems; do
    if [[ " $systems " == *" $s "* ]] || [ -f "$exp_dir/$s/decode_$std_test/text" ]; then out+=" $s"; fi
  done
  for s in $systems; do [[ " $out " == *" $s "* ]] || out+=" $s"; done
  echo "$out"
}

report_one() {  # report_one <system>: scores every decoding of its seeds; routing statistics and threshold curve
  local system=$1 dir set decoding all_test score_log
  all_test=$(test_all)
  # This report's scoring messages of the system's seeds, gathered into exp/score.log afterwards; kept out of
  # the system's exp dir, which may not exist yet (then `need` below names the stage to run).
  score_log=$exp_dir/log/score.$system.log
  mkdir -p "$exp_dir/log" && : >"$score_log"
  local scores=()  # every decoding of every seed, scored in one call (a Python start costs more than one score)
  for dir in $([ "$system" = base ] && echo base || seed_dirs "$system"); do
    local these=("${decodings[@]}")
    speaker_routed "$dir" && these+=(decode_first1 decode_first3 decode_first10)
    for decoding in "${these[@]}"; do
      for set in $std_test $accent_tests $eval_sets; do
        need "$exp_dir/$dir/${decoding}_$set/text" 6
        scores+=(--ref "$data_dir/$set" --hyp "$exp_dir/$dir/${decoding}_$set/text" --out "$exp_dir/$dir/${decoding}_$set")
      done
    done
  done
  python -m hdmole.bin.score --accents "$accents" "${scores[@]}" 2>>"$score_log"
  [ "$system" != base ] || return 0
  # --if-routed: a system without a mixture of experts (full_ft, lora) is skipped with a message.
  if [ ! -f "$exp_dir/$system/routing_test_all.json" ]; then
    # shellcheck disable=SC2086
    python -m hdmole.bin.routing_stats --if-routed \
      --config "$exp_dir/$system/config.yaml" --checkpoint "$exp_dir/base/best.pt" \
      --checkpoint "$exp_dir/$system/best.pt" --data "$all_test" --accents "$accents" \
      --encoder-cache-dir "$exp_dir/encoder_cache" --out "$exp_dir/$system/routing_test_all.json" $eval_args
  fi
  # The threshold's operating curve on the dev set (first seed); --if-thresholded: others are skipped.
  if [ ! -f "$exp_dir/$system/threshold_curve.json" ]; then
    python -m hdmole.bin.threshold_curve --if-thresholded --exp-dir "$exp_dir/$system" \
      --checkpoint "$exp_dir/base/best.pt" --checkpoint "$exp_dir/$system/best.pt" \
      --data "$data_dir/$target_dev" --accents "$accents" ${threshold_taus:+--taus "$threshold_taus"}
  fi
}

stage_report() {
  local report set system
  report=$(report_systems)
  decodings=(decode)  # read by report_one
  [ "$ngram_order" -gt 0 ] && [ "$llm_only_beam" -gt 0 ] && decodings+=(decode_llm)
  test_all >/dev/null  # made once, before the jobs that read it
  # The systems side by side as in stages 5-6 (scoring, and routing statistics and threshold curves: one
  # pass, or (layers + 1) per forced tau, over a dev or test set each): each job scores into its own log.
  # shellcheck disable=SC2086
  parallel report_one base $report
  for system in base $report; do cat "$exp_dir/log/score.$system.log" 2>/dev/null; done >>"$exp_dir/score.log"
  local gate scores=()
  for gate in $source_gates; do  # the source gate's grid: the operating curve (beam search decoding)
    for set in $std_test $accent_tests; do
      need "$exp_dir/gate/g$gate/decode_$set/text" 6
      scores+=(--ref "$data_dir/$set" --hyp "$exp_dir/gate/g$gate/decode_$set/text" --out "$exp_dir/gate/g$gate/decode_$set")
    done
  done
  [ ${#scores[@]} -eq 0 ] || python -m hdmole.bin.score --accents "$accents" "${scores[@]}" 2>>"$exp_dir/score.log"
  local notes=()
  [ -f RESULTS.notes.md ] && notes=(--notes RESULTS.notes.md)
  [ -n "$source_gates" ] && notes+=(--source-gates $source_gates)
  [ -f "$exp_dir/run_commands.txt" ] && notes+=(--run-commands "$exp_dir/run_commands.txt")
  [ -n "$eval_sets" ] && notes+=(--extra-sets $eval_sets)
  # shellcheck disable=SC2086
  python -m hdmole.bin.report --exp-dir "$exp_dir" --systems base $report --std-set "$std_test" \
    --accent-sets $accent_tests --routing-set test_all --stage-times "$exp_dir/stage_times.tsv" \
    --decodings "${decodings[@]}" --seeds "$seeds" --router-dir "$exp_dir/router" --data-dir "$data_dir" \
    --title "$(basename "$PWD"): results" --out "$results_dir/RESULTS.md" --plots-dir "$results_dir/results" "${notes[@]}" $report_args
}
