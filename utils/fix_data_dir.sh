#!/usr/bin/env bash
# Kaldi's fix_data_dir.sh, for hdmole's data dirs: sorts every per-utterance file (wav.scp text
# utt2spk utt2accent, and feats.scp utt2num_frames utt2dur when present), drops duplicate keys,
# utterances with an empty transcript, and utterances missing from any of those files; rebuilds
# spk2utt; says how many utterances it dropped and why. The originals go to <dir>/.backup/.
help_message="Usage: $0 <data-dir>"
. "$(dirname "$0")/parse_options.sh" || exit 1
[ $# -eq 1 ] || { echo "$help_message" >&2; exit 1; }
. "$(dirname "$0")/data_dir_lib.sh"
export LC_ALL=C
set -euo pipefail
dir=${1%/}
[ -f "$dir/utt2spk" ] || { echo "fix_data_dir.sh: $dir/utt2spk is missing; it is the one file a data dir cannot do without" >&2; exit 1; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
present=()
for f in $per_utt_files; do [ -f "$dir/$f" ] && present+=("$f"); done

# Sorted, first line per key kept; empty transcripts removed (they cannot be trained or scored).
for f in "${present[@]}"; do
  sort -s -k1,1 -u "$dir/$f" | awk 'NF > 0' >"$tmp/$f"
done
[ -f "$tmp/text" ] && awk 'NF >= 2' "$tmp/text" >"$tmp/text.nonempty"

# Every utterance id, and the reasons it is dropped.
cut -d' ' -f1 "${present[@]/#/$tmp/}" | sort -u >"$tmp/all_ids"
reasons=""
cp "$tmp/all_ids" "$tmp/kept"
for f in "${present[@]}"; do
  src=$tmp/$f; why="missing from $f"
  if [ "$f" = text ]; then src=$tmp/text.nonempty; why="missing from text or empty transcript"; fi
  cut -d' ' -f1 "$src" | sort -u >"$tmp/ids"
  n=$(comm -23 "$tmp/kept" "$tmp/ids" | wc -l)
  [ "$n" -gt 0 ] && reasons+="${reasons:+, }$n $why"
  comm -12 "$tmp/kept" "$tmp/ids" >"$tmp/kept.new"; mv "$tmp/kept.new" "$tmp/kept"
done

total=$(wc -l <"$tmp/all_ids"); kept=$(wc -l <"$tmp/kept")
mkdir -p "$dir/.backup"
for f in "${present[@]}" spk2utt; do [ -f "$dir/$f" ] && cp "$dir/$f" "$dir/.backup/$f"; done
for f in "${present[@]}"; do
  src=$tmp/$f; [ "$f" = text ] && src=$tmp/text.nonempty
  filter_by_ids "$tmp/kept" "$src" "$dir/$f"
done
make_spk2utt "$dir"
if [ "$kept" -eq "$total" ]; then
  echo "fix_data_dir.sh: $dir: kept all $kept utterances (files sorted; originals in $dir/.backup)"
else
  echo "fix_data_dir.sh: $dir: kept $kept of $total utterances; dropped $((total - kept)): $reasons (originals in $dir/.backup)"
fi
[ "$kept" -gt 0 ] || { echo "fix_data_dir.sh: $dir has no utterances left; see $dir/.backup" >&2; exit 1; }
