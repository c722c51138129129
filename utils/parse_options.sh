# Kaldi-style option parsing, sourced by a script after it sets its defaults:
#
#   stage=0; stop_stage=100; nj=4; use_gpu=false
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh
#
# Then `--stop-stage 3` (or `--stop-stage=3`) sets stop_stage=3. Rules, as in Kaldi:
#   - an option must name a variable the script already set (unknown options are errors);
#   - a variable whose default is true/false only takes true or false;
#   - `--config FILE` sources FILE first (lines like `nj=8`); later options override it;
#   - parsing stops at the first argument that does not start with `--` (or after `--`);
#   - `--help` prints $help_message and every option with its current value, then exits 0.
# It leaves the remaining positional arguments in "$@".

__po_script=${0##*/}

__po_print_help() {
  [ -n "${help_message:-}" ] && printf '%b\n' "$help_message"
  # The options are the variables the calling script assigns at top level (name=value lines) before
  # sourcing this file; list each with its current value, which is the default unless --config ran.
  echo "Options (default values):"
  local name
  for name in $(awk '/parse_options\.sh/ {exit} /^[a-z][a-z0-9_]*=/ && !/^help_message=/ {sub(/=.*/, ""); print}' "$0" | awk '!seen[$0]++'); do
    printf '  --%-24s %s\n' "${name//_/-}" "${!name-}"
  done
}

while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      __po_print_help
      exit 0 ;;
    --)
      shift; break ;;
    --config|--config=*)
      if [ "$1" = --config ]; then
        [ $# -ge 2 ] || { echo "$__po_script: --config needs a file" >&2; exit 1; }
        __po_file=$2; shift 2
      else
        __po_file=${1#--config=}; shift
      fi
      [ -f "$__po_file" ] || { echo "$__po_script: config file '$__po_file' does not exist" >&2; exit 1; }
      # shellcheck disable=SC1090
      . "$__po_file" || { echo "$__po_script: error sourcing config file '$__po_file'" >&2; exit 1; }
      ;;
    --*)
      if [[ "$1" == *=* ]]; then
        __po_opt=${1%%=*}; __po_val=${1#*=}; __po_n=1
      else
        __po_opt=$1; __po_n=2
        if [ $# -lt 2 ]; then
          echo "$__po_script: option $__po_opt needs a value (try --help)" >&2; exit 1
        fi
        __po_val=$2
      fi
      __po_name=${__po_opt#--}; __po_name=${__po_name//-/_}
      if [[ ! "$__po_name" =~ ^[a-zA-Z_][a-zA-Z0-9_]*$ ]] || [ -z "${!__po_name+set}" ]; then
        echo "$__po_script: unknown option $__po_opt (try --help)" >&2; exit 1
      fi
      __po_old=${!__po_name}
      if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
        if [ "$__po_val" != true ] && [ "$__po_val" != false ]; then
          echo "$__po_script: option $__po_opt takes true or false, not '$__po_val'" >&2; exit 1
        fi
      fi
      printf -v "$__po_name" '%s' "$__po_val"
      shift "$__po_n"
      ;;
    *)
      break ;;
  esac
done

unset __po_opt __po_val __po_name __po_old __po_n __po_file
true # so that `. utils/parse_options.sh` does not fail under set -e
