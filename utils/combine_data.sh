#!/usr/bin/env bash
# Kaldi's combine_data.sh: combines several data dirs into one. A per-utterance file (wav.scp text ..., and a
# recipe's own such as pinyin or phones) is combined when every source has it (otherwise it is left out, with
# a warning, as Kaldi does); an utterance id that appears in two sources is an error. A per-speaker file is
# combined the same way (a speaker in two sources must say the same in both); any other file (accents.txt)
# is copied when every source has the same one, else left out with a warning. spk2utt is rebuilt.
help_message="Usage: $0 <dest-dir> <src-dir1> <src-dir2> ..."
. "$(dirname "$0")/parse_options.sh" || exit 1
. "$(dirname "$0")/data_dir_lib.sh"
export LC_ALL=C
set -euo pipefail
me=combine_data.sh
[ $# -ge 2 ] || { echo "$help_message" >&2; exit 1; }
dest=${1%/}; shift
for src in "$@"; do
  [ -f "$src/utt2spk" ] || { echo "$me: $src/utt2spk is missing: $src is not a data dir" >&2; exit 1; }
  [ "${src%/}" != "$dest" ] || { echo "$me: the destination $dest is also a source" >&2; exit 1; }
done
mkdir -p "$dest"
# The files to combine: the known per-utterance ones, and every other file any source has (keyed as in the
# first source that has it, key_kind).
names=$( { for f in $per_utt_files; do echo "$f"; done
           for src in "$@"; do for path in "$src"/*; do [ -f "$path" ] && basename "$path"; done; done; } | awk '!seen[$0]++')
for f in $names; do
  have=0; kind=""
  for src in "$@"; do
    [ -f "$src/$f" ] || continue
    have=$((have + 1)); [ -n "$kind" ] || kind=$(key_kind "$src" "$f")
  done
  [ "$have" -eq 0 ] && { rm -f "$dest/$f"; continue; }
  [ "$kind" = skip ] && continue
  if [ "$have" -ne $# ]; then
    echo "$me: warning: only $have of $# sources have $f; $dest gets no $f" >&2
    rm -f "$dest/$f"; continue
  fi
  if [ "$kind" = whole ]; then
    same=true; for src in "$@"; do cmp -s "$1/$f" "$src/$f" || same=false; done
    if $same; then cp "$1/$f" "$dest/$f"; else
      echo "$me: warning: the sources' $f differ; $dest gets no $f (write the combined one yourself)" >&2
      rm -f "$dest/$f"
    fi
    continue
  fi
  if [ "$kind" = speaker ]; then  # one speaker may be in two sources: identical lines are one
    cat "${@/%//$f}" | sort -u -k1 | awk -v f="$f" -v me="$me" '$1 == prev { printf "%s: speaker %s has two different lines in the sources'"'"' %s. Fix: make them agree\n", me, $1, f > "/dev/stderr"; exit 1 } { prev = $1; print }' >"$dest/$f" || exit 1
    continue
  fi
  for src in "$@"; do sed "s|^|$src\t|" "$src/$f"; done | sort -t$'\t' -k2,2 -s >"$dest/.$f.tagged"
  dup=$(awk -F'\t' '{ split($2, a, " "); if (a[1] == prev) { print a[1] " (in " prevsrc " and " $1 ")"; exit } prev = a[1]; prevsrc = $1 }' "$dest/.$f.tagged")
  if [ -n "$dup" ]; then
    rm -f "$dest/.$f.tagged"
    echo "$me: utterance $dup: ids must be unique across the sources. Fix: give the corpora distinct speaker/utterance prefixes." >&2
    exit 1
  fi
  cut -f2- "$dest/.$f.tagged" | sort -k1,1 -s >"$dest/$f"; rm -f "$dest/.$f.tagged"
done
make_spk2utt "$dest"
echo "$me: combined $# data dirs into $dest ($(wc -l <"$dest/utt2spk") utterances)"
