#!/usr/bin/env bash
# A Kaldi run.pl-style local job runner (written in bash; the name is Kaldi's so recipes read alike).
#
#   utils/run.pl [--max-jobs-run N] JOB=1:4 exp/log/fbank.JOB.log python -m x --part JOB
#   utils/run.pl exp/log/one.log some-command args
#
# Runs the jobs in parallel on this machine (at most N at once; default: all of them), replaces JOB
# (the name before '=') in the log path and in the command by the job index, and writes each job's
# command, start time, output, exit code and run time into its own log. If any job fails it says how
# many failed and which, where the logs are, shows the end of the first failed log, and exits 1.
# utils/slurm.pl takes the same arguments and runs the jobs on a SLURM cluster (cmd.sh picks one).
#
# --gpu N gives every job N cards of its own through CUDA_VISIBLE_DEVICES (as a cluster's scheduler does):
# job k gets the next N of the cards in the caller's CUDA_VISIBLE_DEVICES, or of those `nvidia-smi -L`
# lists when it is unset, round robin (more jobs than cards share them); with no card nothing is set.
set -u
job_runner=run.pl
. "$(dirname "${BASH_SOURCE[0]}")/job_lib.sh"

max_jobs=0
gpu=0
usage="Usage: $0 [--max-jobs-run N] [--gpu N] [VAR=START:END] <log-file> <command...>"
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) max_jobs=$2; shift 2 ;;
    --max-jobs-run=*) max_jobs=${1#*=}; shift ;;
    --gpu) gpu=$2; shift 2 ;;
    --gpu=*) gpu=${1#*=}; shift ;;
    # The other resource options of a cluster runner (slurm.pl) are accepted and ignored, so that cmd.sh's
    # "run.pl --mem 4G --gpu 1" and "slurm.pl --mem 4G --gpu 1" differ in the runner's name only.
    --mem|--num-threads|--time|--config) shift 2 ;;
    --mem=*|--num-threads=*|--time=*|--config=*) shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    --*) echo "run.pl: unknown option $1 ($usage)" >&2; exit 1 ;;
    *) break ;;
  esac
done

parse_job_range "${1:-}" && shift
[ $# -ge 2 ] || { echo "$usage" >&2; exit 1; }
logfile=$1; shift
check_log_name "$logfile"
[[ "$max_jobs" =~ ^[0-9]+$ ]] || { echo "run.pl: --max-jobs-run takes a number, not '$max_jobs'" >&2; exit 1; }
cmd=$(job_command "$@")
[[ "$gpu" =~ ^[0-9]+$ ]] || { echo "run.pl: --gpu takes a number, not '$gpu'" >&2; exit 1; }

gpu_cards=()  # the cards the jobs share out (--gpu N > 0)
if [ "$gpu" -gt 0 ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    IFS=, read -ra gpu_cards <<<"$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    mapfile -t gpu_cards < <(nvidia-smi -L 2>/dev/null | sed -n 's/^GPU \([0-9][0-9]*\):.*/\1/p')
  fi
fi

job_cards() {  # job_cards <job index>: the comma-separated cards of that job (empty: none)
  local n=${#gpu_cards[@]} per=$gpu first j out=""
  [ "$n" -gt 0 ] || return 0
  [ "$per" -le "$n" ] || per=$n
  first=$(( ($1 - job_start) * per ))
  for ((j = 0; j < per; j++)); do out+="${out:+,}${gpu_cards[$(( (first + j) % n ))]}"; done
  printf '%s' "$out"
}

run_one() {  # $1 = job index
  local id=$1 log cmd_i t0 rc cards
  log=$(job_log "$logfile" "$id"); cmd_i=$cmd
  [ -n "$job_var" ] && cmd_i=${cmd_i//$job_var/$id}
  mkdir -p "$(dirname "$log")"
  t0=$(date +%s)
  cards=$(job_cards "$id")
  { echo "# $cmd_i"; echo "# Started at $(date)"; [ -z "$cards" ] || echo "# CUDA_VISIBLE_DEVICES=$cards"; echo "#"; } >"$log"
  if [ -n "$cards" ]; then
    CUDA_VISIBLE_DEVICES=$cards bash -c "$cmd_i" >>"$log" 2>&1 </dev/null
  else
    bash -c "$cmd_i" >>"$log" 2>&1 </dev/null
  fi
  rc=$?
  { echo "# Accounting: time=$(( $(date +%s) - t0 )) threads=1"; echo "# Ended (code $rc) at $(date)"; } >>"$log"
  return $rc
}

declare -A pid_job
failed=(); running=0
for ((id = job_start; id <= job_end; id++)); do
  if [ "$max_jobs" -gt 0 ] && [ "$running" -ge "$max_jobs" ]; then
    # Wait for any job before starting the next one, keeping at most max_jobs running.
    wait -n -p done_pid; rc=$?
    [ "$rc" -ne 0 ] && failed+=("${pid_job[$done_pid]}")
    unset "pid_job[$done_pid]"
    running=$((running - 1))
  fi
  run_one "$id" &
  pid_job[$!]=$id; running=$((running + 1))
done
for pid in "${!pid_job[@]}"; do
  wait "$pid" || failed+=("${pid_job[$pid]}")
done

if [ ${#failed[@]} -gt 0 ]; then
  report_failures "$logfile" "${failed[@]}"
  exit 1
fi
exit 0
