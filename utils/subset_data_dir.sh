#!/usr/bin/env bash
# Kaldi's subset_data_dir.sh: copies a subset of a data dir's utterances to a new data dir (every file of
# the dir: per-utterance and per-speaker files subset, others such as accents.txt copied).
#   subset_data_dir.sh <src> <N> <dest>                 N utterances spread evenly over <src>
#   subset_data_dir.sh --first N|--last N <src> <dest>
#   subset_data_dir.sh --utt-list FILE <src> <dest>     the utterances listed (first field)
#   subset_data_dir.sh --spk-list FILE <src> <dest>     every utterance of the speakers listed
first=""
last=""
utt_list=""
spk_list=""
help_message="Usage: $0 [--first N|--last N|--utt-list FILE|--spk-list FILE] <src-dir> [<N>] <dest-dir>"
. "$(dirname "$0")/parse_options.sh" || exit 1
. "$(dirname "$0")/data_dir_lib.sh"
export LC_ALL=C
set -euo pipefail
me=subset_data_dir.sh
die() { echo "$me: $*" >&2; exit 1; }

nmodes=0
for v in "$first" "$last" "$utt_list" "$spk_list"; do [ -n "$v" ] && nmodes=$((nmodes + 1)); done
if [ "$nmodes" -eq 0 ]; then
  [ $# -eq 3 ] || die "expected <src-dir> <N> <dest-dir> ($help_message)"
  src=${1%/}; n=$2; dest=${3%/}
else
  [ "$nmodes" -eq 1 ] || die "give only one of --first, --last, --utt-list, --spk-list"
  [ $# -eq 2 ] || die "expected <src-dir> <dest-dir> ($help_message)"
  src=${1%/}; dest=${2%/}
fi
[ -f "$src/utt2spk" ] || die "$src/utt2spk is missing: $src is not a data dir"
[ "$src" != "$dest" ] || die "source and destination are the same directory"
for v in "${n:-}" "$first" "$last"; do
  [ -z "$v" ] || [[ "$v" =~ ^[0-9]+$ ]] || die "'$v' is not a number of utterances"
done

total=$(wc -l <"$src/utt2spk")
# Built aside and moved into <dest> only when it has utterances: a list that names none of <src>'s
# utterances is an error that leaves an existing <dest> as it was (not six emptied files).
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ids=$tmp/.subset_ids
if [ -n "$utt_list" ]; then
  [ -r "$utt_list" ] || die "utterance list $utt_list does not exist"
  awk '{print $1}' "$utt_list" | sort -u >"$ids"
elif [ -n "$spk_list" ]; then
  [ -r "$spk_list" ] || die "speaker list $spk_list does not exist"
  awk 'FNR == NR { keep[$1] = 1; next } ($2 in keep) { print $1 }' "$spk_list" "$src/utt2spk" >"$ids"
elif [ -n "$first" ]; then
  head -n "$first" "$src/utt2spk" | cut -d' ' -f1 >"$ids"
elif [ -n "$last" ]; then
  tail -n "$last" "$src/utt2spk" | cut -d' ' -f1 >"$ids"
else
  [ "$n" -le "$total" ] || die "asked for $n utterances but $src has only $total"
  # Evenly spaced, as Kaldi does, so that the subset covers every speaker of a sorted dir.
  awk -v n="$n" -v total="$total" 'n > 0 && int((NR - 1) * n / total) != int(NR * n / total) { print $1 }' \
    "$src/utt2spk" >"$ids"
fi
# Every file of <src> comes along (as split_data.sh splits them): the per-utterance ones (wav.scp text ..., and
# a recipe's own such as pinyin or phones, the CTC targets) keep the subset's utterances, the per-speaker
# ones its speakers, and any other (accents.txt) is copied whole.
filter_by_ids "$ids" "$src/utt2spk" "$tmp/utt2spk"
awk '{ print $2 }' "$tmp/utt2spk" | sort -u >"$tmp/.subset_spks"
written=()
for path in "$src"/*; do
  [ -f "$path" ] || continue
  f=$(basename "$path")
  case $(key_kind "$src" "$f") in
    utterance) filter_by_ids "$ids" "$path" "$tmp/$f" ;;
    speaker) filter_by_ids "$tmp/.subset_spks" "$path" "$tmp/$f" ;;
    whole) cp "$path" "$tmp/$f" ;;
    *) continue ;;
  esac
  written+=("$f")
done
make_spk2utt "$tmp"
kept=$(wc -l <"$tmp/utt2spk")
[ "$kept" -gt 0 ] || die "the subset of $src is empty (check the list or number you gave); $dest was not changed"
mkdir -p "$dest"
for f in "${written[@]}" spk2utt; do mv "$tmp/$f" "$dest/$f"; done
echo "$me: wrote $kept of $total utterances of $src to $dest"
