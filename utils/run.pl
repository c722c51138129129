#!/usr/bin/env bash
# A Kaldi run.pl-style local job runner (written in bash; the name is Kaldi's so recipes read alike).
#
#   utils/run.pl [--max-jobs-run N] JOB=1:4 exp/log/fbank.JOB.log python -m x --part JOB
#   utils/run.pl exp/log/one.log some-command args
#
# Runs the jobs in parallel (at most N at once; default: all of them), replaces JOB (the name
# before '=') in the log path and in the command by the job index, and writes each job's command,
# start time, output, exit code and run time into its own log. If any job fails it says how many
# failed, where the logs are, shows the end of the first failed log, and exits 1.
set -u

max_jobs=0
usage="Usage: $0 [--max-jobs-run N] [VAR=START:END] <log-file> <command...>"
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) max_jobs=$2; shift 2 ;;
    --max-jobs-run=*) max_jobs=${1#*=}; shift ;;
    # Kaldi scripts pass queue options to every runner; a local runner accepts and ignores them.
    --mem|--num-threads|--gpu) shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    --*) echo "run.pl: unknown option $1 ($usage)" >&2; exit 1 ;;
    *) break ;;
  esac
done

var=""; start=1; end=1
if [[ "${1:-}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; start=${BASH_REMATCH[2]}; end=${BASH_REMATCH[3]}; shift
  [ "$start" -le "$end" ] || { echo "run.pl: empty job range $var=$start:$end" >&2; exit 1; }
fi
[ $# -ge 2 ] || { echo "$usage" >&2; exit 1; }
logfile=$1; shift
if [ -n "$var" ] && [[ "$logfile" != *"$var"* ]]; then
  echo "run.pl: the log file '$logfile' must contain '$var', or every job would write the same log" >&2
  exit 1
fi
[[ "$max_jobs" =~ ^[0-9]+$ ]] || { echo "run.pl: --max-jobs-run takes a number, not '$max_jobs'" >&2; exit 1; }

# As in Kaldi's run.pl, the command runs through bash -c: arguments without white space pass
# unquoted (so an escaped \| or \> builds a pipeline), ones with white space are double-quoted.
# A single argument is taken as a whole shell command line.
if [ $# -eq 1 ]; then
  cmd=$1
else
  cmd=""
  for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]] ]]; then cmd+="\"$arg\" "; else cmd+="$arg "; fi
  done
fi

run_one() {  # $1 = job index
  local id=$1 log cmd_i t0 rc
  log=$logfile; cmd_i=$cmd
  if [ -n "$var" ]; then log=${log//$var/$id}; cmd_i=${cmd_i//$var/$id}; fi
  mkdir -p "$(dirname "$log")"
  t0=$(date +%s)
  { echo "# $cmd_i"; echo "# Started at $(date)"; echo "#"; } >"$log"
  bash -c "$cmd_i" >>"$log" 2>&1 </dev/null
  rc=$?
  { echo "# Accounting: time=$(( $(date +%s) - t0 )) threads=1"; echo "# Ended (code $rc) at $(date)"; } >>"$log"
  return $rc
}

declare -A pid_job
failed=(); running=0
for ((id = start; id <= end; id++)); do
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
  first=$(printf '%s\n' "${failed[@]}" | sort -n | head -1)
  first_log=$logfile; [ -n "$var" ] && first_log=${logfile//$var/$first}
  njobs=$((end - start + 1))
  echo "run.pl: ${#failed[@]} / $njobs failed, log is in ${logfile//$var/*}" >&2
  echo "run.pl: the end of $first_log:" >&2
  tail -n 15 "$first_log" | sed 's/^/    /' >&2
  exit 1
fi
exit 0
