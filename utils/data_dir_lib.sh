# Shared by fix_data_dir.sh, subset_data_dir.sh and combine_data.sh (sourced, not run).
# The per-utterance files of a data dir (first field = utterance id); spk2utt is always rebuilt
# from utt2spk rather than filtered.
per_utt_files="wav.scp text utt2spk utt2accent feats.scp utt2num_frames utt2dur"

# filter_by_ids <id-list> <in-file> <out-file>: keeps the lines of in-file whose first field is
# in id-list (one id per line), in the order of in-file.
filter_by_ids() {
  awk 'FNR == NR { keep[$1] = 1; next } ($1 in keep)' "$1" "$2" >"$3"
}

# make_spk2utt <dir>: rebuilds <dir>/spk2utt from <dir>/utt2spk, sorted.
make_spk2utt() {
  sort -k2,2 -s "$1/utt2spk" | "$(dirname "${BASH_SOURCE[0]}")/utt2spk_to_spk2utt.pl" | sort -k1,1 >"$1/spk2utt"
}

# key_kind <dir> <file name>: how a file of a data dir is keyed, as split_data.sh tells it: "utterance" (a
# per_utt_files name, or its first key is an utterance id of <dir>/utt2spk; e.g. a recipe's pinyin or phones),
# "speaker" (its first key is a speaker, e.g. spk2gender), "skip" (spk2utt, rebuilt; a binary .ark; a dot
# file) or "whole" (anything else, e.g. accents.txt: copied as it is).
key_kind() {
  local dir=$1 f=$2 first
  case $f in spk2utt|*.ark|.*) echo skip; return ;; esac
  case " $per_utt_files " in *" $f "*) echo utterance; return ;; esac
  first=$(awk 'NF { print $1; exit }' "$dir/$f")
  if [ -n "$first" ] && awk -v k="$first" '$1 == k { found = 1; exit } END { exit !found }' "$dir/utt2spk"; then
    echo utterance
  elif [ -n "$first" ] && awk -v k="$first" '$2 == k { found = 1; exit } END { exit !found }' "$dir/utt2spk"; then
    echo speaker
  else
    echo whole
  fi
}
