#!/usr/bin/env bash
# Kaldi's split_data.sh: splits a data dir into N parts for N parallel jobs.
#   utils/split_data.sh [--per-utt] <data-dir> <N>
# writes <data-dir>/split<N>/{1..N} (by speaker: no speaker is split between two parts), or with
# --per-utt <data-dir>/split<N>utt/{1..N} (by utterance: any N up to the number of utterances).
# The parts are contiguous in the dir's sorted order and as even in utterances as the speakers allow;
# every part gets at least one speaker. Every file of the data dir is split consistently: a file keyed
# by utterance (wav.scp text utt2spk utt2accent feats.scp utt2num_frames pinyin ...) keeps the part's
# utterances, one keyed by speaker (spk2gender) the part's speakers, spk2utt is rebuilt from the part's
# utt2spk, and any other file (accents.txt) is copied whole. A split newer than every file of the data
# dir is reused (as Kaldi does), so N jobs can all call this on the same dir after one call made it; calls
# side by side on one dir take turns (flock on its utt2spk), the later ones reusing the first one's split.
per_utt=false
help_message="Usage: $0 [--per-utt] <data-dir> <num-parts>"
# Kaldi's flag form (--per-utt with no value), besides parse_options.sh's --per-utt true|false.
if [ "${1:-}" = --per-utt ] && [ "${2:-}" != true ] && [ "${2:-}" != false ]; then per_utt=true; shift; fi
. "$(dirname "$0")/parse_options.sh" || exit 1
. "$(dirname "$0")/data_dir_lib.sh"
export LC_ALL=C
set -euo pipefail
me=split_data.sh
die() { echo "$me: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "expected <data-dir> <num-parts> ($help_message)"
data=${1%/}; n=$2
[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "the number of parts must be a positive integer, not '$n'"
[ -f "$data/utt2spk" ] || die "$data/utt2spk is missing: $data is not a data dir (utils/validate_data_dir.sh checks one)"
if $per_utt; then out=$data/split${n}utt; else out=$data/split$n; fi

# Two jobs side by side (stage 6 decodes two systems at a time) split the same test set at once: without a lock
# both see no split, and one's `rm -rf` of the split meets the other's `mv` into it ("cannot remove ...: Is a
# directory") or pulls the parts from under a decoding that already reads them. So the check and the split hold
# an exclusive flock(1) on the data dir's utt2spk (opened for reading: its mtime, which the reuse test below
# compares, stays as it is); the second caller waits, then reuses the first's split.
exec {lock_fd}<"$data/utt2spk"
flock "$lock_fd" || die "could not lock $data/utt2spk (flock, from util-linux, is needed)"

# Reuse a complete split that is newer than every file of the data dir.
if [ -f "$out/.done" ] && [ -z "$(find "$data" -maxdepth 1 -type f -newer "$out/.done" -print -quit)" ]; then
  exit 0
fi

nutt=$(wc -l <"$data/utt2spk")
if $per_utt; then
  # Each utterance is its own unit.
  units=$(awk '{ print $1, 1 }' "$data/utt2spk")
  nunits=$nutt what=utterances
else
  units=$(awk '{ n[$2]++ } END { for (s in n) print s, n[s] }' "$data/utt2spk" | sort -k1,1)
  nunits=$(printf '%s\n' "$units" | grep -c .)
  what=speakers
fi
if [ "$n" -gt "$nunits" ]; then
  hint=""; $per_utt || hint="; split by utterance (--per-utt) or use fewer jobs"
  die "cannot split $data into $n parts: it has only $nunits $what$hint"
fi

# unit -> part: contiguous blocks, each taking units while its cumulative count stays nearest to
# total * part / N, and always leaving one unit for each part still to fill.
assign=$(printf '%s\n' "$units" | awk -v n="$n" -v total="$nutt" -v nunits="$nunits" '
  { unit[NR] = $1; cnt[NR] = $2 }
  END {
    part = 1; in_part = 0; cum = 0
    for (i = 1; i <= nunits; i++) {
      if (in_part > 0 && part < n && (cum + cnt[i] / 2 > total * part / n || nunits - i + 1 <= n - part)) {
        part++; in_part = 0
      }
      print unit[i], part; cum += cnt[i]; in_part++
    }
  }')

tmp=$out.tmp.$$
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
for ((j = 1; j <= n; j++)); do mkdir -p "$tmp/$j"; done
# utterance -> part, and speaker -> the parts it appears in
if $per_utt; then
  printf '%s\n' "$assign" >"$tmp/utt2part"
else
  printf '%s\n' "$assign" | awk 'FNR == NR { p[$1] = $2; next } { print $1, p[$2] }' - "$data/utt2spk" >"$tmp/utt2part"
fi
awk 'FNR == NR { p[$1] = $2; next } !(($2 " " p[$1]) in seen) { seen[$2 " " p[$1]] = 1; print $2, p[$1] }' \
  "$tmp/utt2part" "$data/utt2spk" >"$tmp/spk2part"

for path in "$data"/*; do
  [ -f "$path" ] || continue
  f=$(basename "$path")
  # Keyed by utterance if its first key is an utterance id, by speaker if a speaker id (key_kind); then every
  # key must be. A binary feature archive (*.ark: no table of lines) is left out, the parts' feats.scp point
  # into it where it is; spk2utt is rebuilt.
  kind=$(key_kind "$data" "$f")
  case $kind in
    utterance) map=$tmp/utt2part ;;
    speaker) map=$tmp/spk2part ;;
    whole) for ((j = 1; j <= n; j++)); do cp "$path" "$tmp/$j/$f"; done; continue ;;
    *) continue ;;
  esac
  for ((j = 1; j <= n; j++)); do : >"$tmp/$j/$f"; done
  awk -v dir="$tmp" -v f="$f" -v src="$path" -v kind="$kind" '
    FNR == NR { parts[$1] = parts[$1] " " $2; next }
    !NF { next }
    !($1 in parts) {
      printf "%s:%d: %s %s is not in utt2spk (the other lines are keyed by %s); fix the data dir (utils/fix_data_dir.sh)\n",
        src, FNR, kind, $1, kind > "/dev/stderr"
      bad = 1; exit 1
    }
    {
      k = split(parts[$1], p, " ")
      for (i = 1; i <= k; i++) {
        out = dir "/" p[i] "/" f
        if (out != last) { if (last != "") close(last); last = out }
        print >> out
      }
    }' "$map" "$path" || die "$path could not be split (see above)"
done
for ((j = 1; j <= n; j++)); do make_spk2utt "$tmp/$j"; done
rm -f "$tmp/utt2part" "$tmp/spk2part"
touch "$tmp/.done"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
