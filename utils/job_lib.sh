# Shared by run.pl and slurm.pl (sourced, not run): the command line of a job, the names of its logs,
# and the report on failed jobs, so that both runners behave alike and a recipe can switch between
# them in cmd.sh without any other change.

# parse_job_range "$1": sets job_var, job_start, job_end from VAR=START:END (or VAR=N, one job);
# returns 1 (leaving one job, no variable) when $1 is not a range.
parse_job_range() {
  job_var=""; job_start=1; job_end=1
  if [[ "${1:-}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
    job_var=${BASH_REMATCH[1]}; job_start=${BASH_REMATCH[2]}; job_end=${BASH_REMATCH[3]}
  elif [[ "${1:-}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)$ ]]; then
    job_var=${BASH_REMATCH[1]}; job_start=${BASH_REMATCH[2]}; job_end=${BASH_REMATCH[2]}
  elif [[ "${1:-}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
    # VAR=... that is no range (JOB=1:abc, JOB=1-4): an error, not a log file named after it
    echo "$job_runner: '$1' is not a job range. Fix: VAR=START:END with whole numbers (JOB=1:4), or VAR=N for one job" >&2
    exit 1
  else
    return 1
  fi
  if [ "$job_start" -gt "$job_end" ]; then
    echo "$job_runner: empty job range $1 (START must not exceed END)" >&2; exit 1
  fi
}

# check_log_name <log>: with a job range, every job needs its own log.
check_log_name() {
  if [ -n "$job_var" ] && [[ "$1" != *"$job_var"* ]]; then
    echo "$job_runner: the log file '$1' must contain '$job_var', or every job would write the same log" >&2
    exit 1
  fi
}

# job_command "$@": the shell command line a job runs (through bash -c). As in Kaldi, arguments without
# white space pass unquoted (so an escaped \| or \> builds a pipeline), ones with white space are
# double-quoted, and a single argument is taken as a whole shell command line.
job_command() {
  if [ $# -eq 1 ]; then printf '%s' "$1"; return; fi
  local arg out=""
  for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]] ]]; then out+="\"$arg\" "; else out+="$arg "; fi
  done
  printf '%s' "${out% }"
}

# job_log <template> <id>: the log of job <id> (the job variable replaced by the index).
job_log() {
  if [ -n "$job_var" ]; then printf '%s' "${1//$job_var/$2}"; else printf '%s' "$1"; fi
}

# job_succeeded <log>: the log's last line records exit code 0 (a job killed by the system, or one that
# never started, has no such line).
job_succeeded() {
  [ -f "$1" ] && tail -n 1 "$1" | grep -q '^# Ended (code 0) '
}

# report_failures <log template> <failed ids...>: the summary every runner prints when a job failed
# (how many, where the logs are, the end of the first failed log); the caller exits 1.
report_failures() {
  local template=$1 first first_log njobs; shift
  first=$(printf '%s\n' "$@" | sort -n | head -1)
  first_log=$(job_log "$template" "$first")
  njobs=$((job_end - job_start + 1))
  echo "$job_runner: $# / $njobs failed (job$( [ $# -gt 1 ] && echo s) $(printf '%s\n' "$@" | sort -n | tr '\n' ' ' | sed 's/ $//')), log is in $(job_log "$template" '*')" >&2
  if [ -f "$first_log" ]; then
    echo "$job_runner: the end of $first_log:" >&2
    tail -n 15 "$first_log" | sed 's/^/    /' >&2
  else
    echo "$job_runner: $first_log was never written (the job did not start)" >&2
  fi
}
