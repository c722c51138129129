# What every recipe's run.sh does around its own stage 0, in one place (sourced, not run):
#
#   cd "$(dirname "$0")"
#   . ../TEMPLATE/recipe_common.sh     # first, so that it sees the command line as typed
#   stage=0 stop_stage=7 systems=all exp_dir=... (the recipe's defaults)
#   . utils/parse_options.sh; utils/check_stage_range.sh ...; utils/check_counts.sh ...
#   install_if_asked; . ./path.sh       # the options are checked before anything is installed
#   resolve_systems                    # --systems all | "a b": checked, in table order
#   record_invocation "$exp_dir"
#   ... stage 0 (the recipe's data preparation) ...
#   run_shared_stages --source-train ... (options of ../TEMPLATE/hdmole.sh for stages 1-7)
#
# The comparison systems are the top-level conf/systems/*.yaml plus any of the recipe's own
# conf/systems/*.yaml (docs/configs.md); hdmole.bin.systems lists and checks them.

recipe_invocation="./run.sh $*"  # recorded in <exp>/run_commands.txt, quoted in RESULTS.md

# The top-level ./run.sh sets HDMOLE_INSTALL=true: the install (tools/install.sh) is completed here, after
# the recipe has read and checked its options (so --help or a typo installs nothing) and before path.sh
# needs the venv. A complete install is only checked (tools/install.sh --check, no apt or pip). A recipe
# run directly installs nothing: path.sh then says to run tools/install.sh.
install_if_asked() {
  [ "${HDMOLE_INSTALL:-false}" = true ] || return 0
  local install
  install=$(dirname "$(readlink -f utils)")/tools/install.sh  # the recipe's utils links to the top's
  "$install" --check || "$install" || exit 1
}

# $systems ("all", or names separated by spaces) becomes the checked list; $all_systems is every system
# the recipe knows, in table order (hdmole.sh's --table-systems). An unknown name stops the recipe here,
# before stage 0, with the known names.
resolve_systems() {
  all_systems=$(python -m hdmole.bin.systems --recipe-conf conf all) || exit 1
  systems=$(python -m hdmole.bin.systems --recipe-conf conf "$systems") || exit 1
}

record_invocation() {  # record_invocation <exp dir>
  mkdir -p "$1"
  echo "$(date '+%F %T') $recipe_invocation" >>"$1/run_commands.txt"
}

# Stages 1-7 of ../TEMPLATE/hdmole.sh for the range --stage/--stop-stage asked for (stage 0 is the
# recipe's own, so the template starts at 1 at the earliest); nothing when the range ends at 0.
run_shared_stages() {  # run_shared_stages <hdmole.sh options>
  [ "$stop_stage" -ge 1 ] || return 0
  ../TEMPLATE/hdmole.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --systems "$systems" --table-systems "$all_systems" "$@"
}
