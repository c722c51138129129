#!/usr/bin/env bash
# Kaldi's fix_data_dir.sh, for hdmole's data dirs: sorts every per-utterance file (wav.scp text
# utt2spk utt2accent, and feats.scp utt2num_frames utt2dur when present), drops repeated identical
# lines, utterances with an empty transcript, and utterances missing from any of those files; removes
# a UTF-8 byte-order mark and Windows CRLF line ends; rebuilds spk2utt; says what it changed and why.
#
# It never loses data: ids and values may be separated by any white space (as Kaldi reads them); an
# id listed twice with two different values, a file that is not UTF-8, or a result with no utterance
# left is an error that changes nothing. The originals go to <dir>/.backup/ (a later run that changes
# something again keeps that one and uses .backup.2/, .backup.3/, ...); a run with nothing to fix
# writes nothing.
help_message="Usage: $0 <data-dir>"
. "$(dirname "$0")/parse_options.sh" || exit 1
[ $# -eq 1 ] || { echo "$help_message" >&2; exit 1; }
. "$(dirname "$0")/data_dir_lib.sh"
export LC_ALL=C
set -euo pipefail
me=fix_data_dir.sh
die() { echo "$me: $*" >&2; exit 1; }
dir=${1%/}
[ -f "$dir/utt2spk" ] || die "$dir/utt2spk is missing; it is the one file a data dir cannot do without"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
present=()
for f in $per_utt_files; do [ -f "$dir/$f" ] && present+=("$f"); done

# 0. A file in another encoding cannot be repaired by guessing: say how to convert it.
problem=$("$(dirname "$0")/validate_text_encoding.pl" --utf8-only "${present[@]/#/$dir/}") ||
  die "$problem; nothing was changed"

# 1. Per file: no BOM, no CR, no blank lines; a repeated id must repeat the same value (the value is
#    what follows the id and its white space), else it is an error naming both lines. Then sorted.
notes=()
for f in "${present[@]}"; do
  [ "$(head -c 3 "$dir/$f")" = $'\xef\xbb\xbf' ] && notes+=("removed the byte-order mark of $f")
  ncr=$(tr -cd '\r' <"$dir/$f" | wc -c)
  [ "$ncr" -gt 0 ] && notes+=("removed $ncr carriage returns (CRLF line ends) from $f")
  sed -e '1s/^\xef\xbb\xbf//' -e 's/\r$//' "$dir/$f" | awk -v file="$dir/$f" -v name="$f" -v out="$tmp/$f.dups" '
    NF == 0 { next }
    (name == "utt2spk" || name == "utt2accent") && NF != 2 {
      printf "%s line %d: expected \"<utterance> <%s>\", got \"%s\". Fix: one %s per utterance (no spaces in it); nothing was changed\n", file, NR, substr(name, 6), $0, substr(name, 6) > "/dev/stderr"
      bad = 1; exit 1
    }
    { value = $0; sub(/^[ \t]*[^ \t]+[ \t]*/, "", value); sub(/[ \t]+$/, "", value) }
    $1 in first {
      if (value != seen[$1]) {
        printf "%s lines %d and %d: id %s has two different values (\"%s\" and \"%s\"). Fix: delete the wrong line, then run fix_data_dir.sh again; nothing was changed\n", file, first[$1], NR, $1, seen[$1], value > "/dev/stderr"
        bad = 1; exit 1
      }
      dups++; next
    }
    { first[$1] = NR; seen[$1] = value; print }
    END { if (dups && !bad) print dups > out }' >"$tmp/$f.uniq" 2>"$tmp/error" || die "$(cat "$tmp/error")"
  [ -f "$tmp/$f.dups" ] && notes+=("dropped $(cat "$tmp/$f.dups") repeated identical line(s) of $f")
  sort -s -k1,1 "$tmp/$f.uniq" >"$tmp/$f"
done
# Empty transcripts cannot be trained or scored.
[ -f "$tmp/text" ] && awk 'NF >= 2' "$tmp/text" >"$tmp/text.nonempty"

# 2. Every utterance id, and the reasons it is dropped.
for f in "${present[@]}"; do awk '{ print $1 }' "$tmp/$f"; done | sort -u >"$tmp/all_ids"
reasons=""
cp "$tmp/all_ids" "$tmp/kept"
for f in "${present[@]}"; do
  src=$tmp/$f; why="missing from $f"
  if [ "$f" = text ]; then src=$tmp/text.nonempty; why="missing from text or empty transcript"; fi
  awk '{ print $1 }' "$src" | sort -u >"$tmp/ids"
  n=$(comm -23 "$tmp/kept" "$tmp/ids" | wc -l)
  [ "$n" -gt 0 ] && reasons+="${reasons:+, }$n $why"
  comm -12 "$tmp/kept" "$tmp/ids" >"$tmp/kept.new"; mv "$tmp/kept.new" "$tmp/kept"
done
total=$(wc -l <"$tmp/all_ids"); kept=$(wc -l <"$tmp/kept")
[ "$kept" -gt 0 ] || die "$dir: no utterance is in every file ($reasons); nothing was changed. Fix: give ${present[*]} the same utterance ids"

# 3. The new files, built aside; the dir is touched only if something changes.
mkdir "$tmp/new"
for f in "${present[@]}"; do
  src=$tmp/$f; [ "$f" = text ] && src=$tmp/text.nonempty
  filter_by_ids "$tmp/kept" "$src" "$tmp/new/$f"
done
make_spk2utt "$tmp/new"
changed=()
for f in "${present[@]}"; do cmp -s "$tmp/new/$f" "$dir/$f" || changed+=("$f"); done
# spk2utt is derived: one that says the same with other white space is kept as it is.
[ -f "$dir/spk2utt" ] && cmp -s "$tmp/new/spk2utt" <(awk '{ $1 = $1; print }' "$dir/spk2utt") || changed+=(spk2utt)
# What fix_data_dir.sh cannot make: a dir without audio (wav.scp, or feats.scp) or accents is not an
# hdmole data dir however well its other files are sorted (validate_data_dir.sh would reject it).
absent=()
[ -f "$dir/wav.scp" ] || [ -f "$dir/feats.scp" ] || absent+=(wav.scp)
[ -f "$dir/utt2accent" ] || absent+=(utt2accent)
missing_note() {
  [ ${#absent[@]} -gt 0 ] || return 0
  echo "$me: $dir has no ${absent[*]}, which fix_data_dir.sh cannot make. Fix: write $(echo "${absent[*]}" | sed 's/ / and /') (README.md, \"Data directories\"), then run utils/validate_data_dir.sh $dir" >&2
  return 1
}
if [ ${#changed[@]} -eq 0 ]; then
  echo "$me: $dir: nothing to fix in ${present[*]} ($kept utterances; every file sorted); no file changed"
  missing_note
  exit
fi

# 4. Back up every file (a first backup is never overwritten), then move the new ones in.
backup=$dir/.backup; i=2
while [ -e "$backup" ]; do backup=$dir/.backup.$i; i=$((i + 1)); done
mkdir "$backup"
for f in "${present[@]}" spk2utt; do [ -f "$dir/$f" ] && cp -p "$dir/$f" "$backup/$f"; done
for f in "${changed[@]}"; do mv "$tmp/new/$f" "$dir/$f"; done
notes+=("rewrote ${changed[*]}")
summary=$(IFS=';'; echo "${notes[*]}" | sed 's/;/; /g')
if [ "$kept" -eq "$total" ]; then
  echo "$me: $dir: kept all $kept utterances ($summary); originals in $backup"
else
  echo "$me: $dir: kept $kept of $total utterances; dropped $((total - kept)): $reasons ($summary); originals in $backup"
fi
missing_note
