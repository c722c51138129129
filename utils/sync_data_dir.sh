#!/usr/bin/env bash
# Keeps a copy of a data dir for features of another kind (Kaldi's data/<set>_hires idea; egs/kespeech keeps
# data/whisper<bins>/<set> per encoder): copies every file stage 0 wrote (wav.scp text utt2spk spk2utt
# utt2accent and the recipe's own side files, e.g. phones) that differs, removes the ones the source no
# longer has, and never copies what stage 1 writes (feats.scp, utt2num_frames, frontend.json). When any
# file changed, the destination's stage-1 files are removed too, so that stage 1 computes the features
# again instead of keeping those of other utterances.
help_message="Usage: $0 <src-dir> <dest-dir>"
. "$(dirname "$0")/parse_options.sh" || exit 1
set -euo pipefail
me=sync_data_dir.sh
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
src=${1%/}; dest=${2%/}
[ -f "$src/wav.scp" ] || { echo "$me: $src/wav.scp is missing: $src is not a data dir (stage 0 writes it)" >&2; exit 1; }
[ "$(readlink -f "$src")" != "$(readlink -f "$dest")" ] || { echo "$me: $src and $dest are the same dir" >&2; exit 1; }
stage1_files="feats.scp utt2num_frames frontend.json"
is_stage1() { [[ " $stage1_files " == *" $1 "* ]]; }
mkdir -p "$dest"
changed=""
for path in "$src"/*; do
  f=$(basename "$path")
  [ -f "$path" ] && ! is_stage1 "$f" || continue
  cmp -s "$path" "$dest/$f" && continue
  cp "$path" "$dest/.$f.tmp" && mv "$dest/.$f.tmp" "$dest/$f"  # never half a file under the real name
  changed+=" $f"
done
for path in "$dest"/*; do
  f=$(basename "$path")
  [ -f "$path" ] && ! is_stage1 "$f" && [ ! -e "$src/$f" ] || continue
  rm -f "$path"; changed+=" $f"
done
[ -n "$changed" ] || exit 0
# shellcheck disable=SC2086
(cd "$dest" && rm -f $stage1_files)
echo "$me: $dest updated from $src (${changed# }); its features are computed again in stage 1"
