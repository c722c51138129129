#!/usr/bin/env bash
# A Kaldi slurm.pl-style job runner for SLURM clusters (in bash; the arguments are run.pl's):
#
#   utils/slurm.pl [--mem 4G] [--gpu 1] [--num-threads 4] [--time 4:00:00] [--max-jobs-run N] \
#       JOB=1:4 exp/log/decode.JOB.log python -m x --part JOB
#
# Writes a job script <log dir>/q/<name>.sh and submits it as one job array with `sbatch --wait`
# (task JOB = the array index: JOB is replaced in the command and in the log name), so it returns when
# every job has finished, like run.pl. Each job writes its own log (command, host, output, exit code,
# run time); what SLURM itself says (a job killed at its time limit) goes to <log dir>/q/<name>.<JOB>.out.
# If any job fails (or never finished) it says which, shows the end of the first failed log and what SLURM
# said about the first failed job it said anything about (its .out: a cancelled or timed-out job), exits 1.
#
# The resource options become sbatch arguments through rules (Kaldi's slurm.conf format), read from
# --config FILE, else conf/slurm.conf if the recipe has one, else the built-in rules below. One line each:
#   command sbatch --export=ALL --partition=cpu   # the submit command and arguments of every job
#   option mem=* --mem-per-cpu=$0                 # --mem 4G -> --mem-per-cpu=4G ($0 is the value)
#   option gpu=0                                  # a rule for one value (here: no arguments at all)
#   default gpu=0                                 # the value when the option is not given
# Any --name value with a rule is accepted (--num-threads uses the rule num_threads).
# --dry-run writes the job script and prints the sbatch command without submitting (for checking).
set -u
job_runner=slurm.pl
. "$(dirname "${BASH_SOURCE[0]}")/job_lib.sh"
die() { echo "slurm.pl: $*" >&2; exit 1; }

builtin_conf='command sbatch --export=ALL
option time=* --time=$0
option mem=* --mem-per-cpu=$0
option mem=0
option num_threads=* --cpus-per-task=$0
option num_threads=1
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0'

usage="Usage: $0 [--config FILE] [--mem 4G] [--gpu N] [--num-threads N] [--time T] [--max-jobs-run N] [--dry-run] [VAR=START:END] <log-file> <command...>"
config=""; max_jobs=0; dry_run=false
declare -A given=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "$usage"; exit 0 ;;
    --dry-run) dry_run=true; shift; continue ;;
    --*=*) name=${1%%=*}; value=${1#*=}; shift ;;
    --*) [ $# -ge 2 ] || die "option $1 needs a value ($usage)"; name=$1; value=$2; shift 2 ;;
    *) break ;;
  esac
  name=${name#--}; name=${name//-/_}
  case "$name" in
    config) config=$value ;;
    max_jobs_run) max_jobs=$value ;;
    *) given[$name]=$value ;;
  esac
done
[[ "$max_jobs" =~ ^[0-9]+$ ]] || die "--max-jobs-run takes a number, not '$max_jobs'"
# The resource options, checked here: sbatch would reject a bad value only after the jobs were queued,
# or take it in another sense (--gres=gpu:-1).
for name in "${!given[@]}"; do
  value=${given[$name]}
  case "$name" in
    mem) [[ "$value" =~ ^[0-9]+[KMGTkmgt]?$ ]] || die "--mem '$value' is not a memory size. Fix: a number with an optional K, M, G or T suffix (--mem 4G)" ;;
    gpu) [[ "$value" =~ ^[0-9]+$ ]] || die "--gpu '$value' is not a number of GPUs. Fix: a whole number >= 0 (--gpu 1)" ;;
    num_threads) [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -ge 1 ] || die "--num-threads '$value' is not a number of threads. Fix: a whole number >= 1 (--num-threads 4)" ;;
    time) [[ "$value" =~ ^([0-9]+-)?[0-9]+(:[0-9]+){0,2}$ || "${value,,}" =~ ^(unlimited|infinite)$ ]] \
      || die "--time '$value' is not a SLURM time limit. Fix: minutes, H:MM:SS or D-HH:MM:SS (--time 4:00:00)" ;;
  esac
done

# ---- the rules
declare -A rule_any=() rule_one=() defaults=()
submit=()
conf_name="the built-in rules of utils/slurm.pl"
if [ -z "$config" ] && [ -f conf/slurm.conf ]; then config=conf/slurm.conf; fi
if [ -n "$config" ]; then
  [ -f "$config" ] || die "config file '$config' does not exist (give --config FILE, or leave it out for the built-in rules)"
  conf_text=$(cat "$config"); conf_name=$config
else
  conf_text=$builtin_conf
fi
lineno=0
while IFS= read -r line; do
  lineno=$((lineno + 1))
  line=${line%%#*}
  read -r -a words <<<"$line"
  [ ${#words[@]} -gt 0 ] || continue
  key=${words[0]}; spec=${words[1]:-}
  case "$key" in
    command) submit=("${words[@]:1}") ;;
    option|default)
      [[ "$spec" =~ ^[a-z_]+=.+$ ]] || die "$conf_name:$lineno: expected '$key NAME=VALUE ...', got '$line'"
      name=${spec%%=*}; value=${spec#*=}
      if [ "$key" = default ]; then defaults[$name]=$value
      elif [ "$value" = '*' ]; then rule_any[$name]="${words[*]:2}"
      else rule_one[$name=$value]="${words[*]:2}"; fi ;;
    *) die "$conf_name:$lineno: unknown line '$line' (lines start with command, option or default)" ;;
  esac
done <<<"$conf_text"
[ ${#submit[@]} -gt 0 ] || die "$conf_name has no 'command' line (e.g. 'command sbatch --export=ALL')"

sbatch_args=()
for name in "${!defaults[@]}"; do [ -n "${given[$name]+x}" ] || given[$name]=${defaults[$name]}; done
for name in $(printf '%s\n' "${!given[@]}" | sort); do
  value=${given[$name]}
  if [ -n "${rule_one[$name=$value]+x}" ]; then args=${rule_one[$name=$value]}
  elif [ -n "${rule_any[$name]+x}" ]; then args=${rule_any[$name]//\$0/$value}
  else die "--${name//_/-} $value: $conf_name has no rule for it (add 'option $name=* <sbatch arguments with \$0>')"; fi
  read -r -a words <<<"$args"
  sbatch_args+=("${words[@]}")
done

# ---- the jobs
parse_job_range "${1:-}" && shift
[ $# -ge 2 ] || die "$usage"
logfile=$1; shift
check_log_name "$logfile"
cmd=$(job_command "$@")
logdir=$(dirname "$logfile")
base=$(basename "$logfile" .log)
[ -n "$job_var" ] && { base=${base//.$job_var/}; base=${base//$job_var/}; }
qdir=$logdir/q
script=$qdir/$base.sh
mkdir -p "$qdir" || die "cannot create $qdir"

# The job script substitutes the array index itself, so one script serves every task; the command and the
# log name are stored quoted (printf %q), exactly as given.
{
  echo "#!/usr/bin/env bash"
  echo "# Written by utils/slurm.pl at $(date '+%F %T'); submitted with:"
  echo "#   ${submit[*]} ${sbatch_args[*]} --array=$job_start-$job_end (one task per job)"
  echo "cd $(printf '%q' "$PWD") || exit 1"
  echo "[ -f ./path.sh ] && . ./path.sh  # the recipe's environment, in case the cluster does not pass it on"
  echo "id=\${SLURM_ARRAY_TASK_ID:?run this script as a SLURM array task (sbatch --array), not directly}"
  echo "log=$(printf '%q' "$logfile")"
  echo "cmd=$(printf '%q' "$cmd")"
  if [ -n "$job_var" ]; then echo "log=\${log//$job_var/\$id}; cmd=\${cmd//$job_var/\$id}"; fi
  cat <<'BODY'
mkdir -p "$(dirname "$log")"
t0=$(date +%s)
{ echo "# $cmd"; echo "# Started at $(date) on $(hostname) (SLURM job ${SLURM_ARRAY_JOB_ID:-?}_$id)"; echo "#"; } >"$log"
bash -c "$cmd" >>"$log" 2>&1 </dev/null
rc=$?
{ echo "# Accounting: time=$(( $(date +%s) - t0 )) threads=${SLURM_CPUS_PER_TASK:-1}"; echo "# Ended (code $rc) at $(date)"; } >>"$log"
exit $rc
BODY
} >"$script"
chmod +x "$script"

array=$job_start-$job_end
[ "$max_jobs" -gt 0 ] && array+=%$max_jobs
full=("${submit[@]}" --wait --parsable --job-name="$base" --array="$array" --output="$qdir/$base.%a.out"
      "${sbatch_args[@]}" "$script")
if $dry_run; then
  printf '%q ' "${full[@]}"; echo
  exit 0
fi

# Old logs would pass for finished jobs if a task never started.
for ((id = job_start; id <= job_end; id++)); do rm -f "$(job_log "$logfile" "$id")" "$qdir/$base.$id.out"; done
submitted=$qdir/$base.sbatch
cancel() {  # Ctrl-C or a kill of this runner cancels the jobs it submitted
  local jobid
  jobid=$(head -n 1 "$submitted" 2>/dev/null | cut -d';' -f1)
  [[ "$jobid" =~ ^[0-9]+$ ]] && scancel "$jobid" 2>/dev/null
  echo "slurm.pl: interrupted; cancelled SLURM job ${jobid:-?}" >&2
  exit 130
}
trap cancel INT TERM
"${full[@]}" >"$submitted" 2>&1 &
wait $!
sbatch_rc=$?
trap - INT TERM

failed=()
for ((id = job_start; id <= job_end; id++)); do
  job_succeeded "$(job_log "$logfile" "$id")" || failed+=("$id")
done
if [ ${#failed[@]} -gt 0 ]; then
  if [ ${#failed[@]} -eq $((job_end - job_start + 1)) ] && [ "$sbatch_rc" -ne 0 ] \
     && [ ! -f "$(job_log "$logfile" "${failed[0]}")" ]; then
    die "sbatch failed (exit $sbatch_rc) and no job started: $(tail -n 5 "$submitted" | tr '\n' ' ')(command: ${full[*]})"
  fi
  report_failures "$logfile" "${failed[@]}"
  # What SLURM said about the first failed job that it said anything about (a job it cancelled or killed at
  # its time limit: "*** JOB 12 ON node CANCELLED AT ... ***"); a job that failed by itself leaves it empty.
  for id in "${failed[@]}"; do
    out=$qdir/$base.$id.out
    if [ -s "$out" ]; then echo "slurm.pl: SLURM's output of job $id ($out):" >&2; tail -n 5 "$out" | sed 's/^/    /' >&2; break; fi
  done
  exit 1
fi
exit 0
