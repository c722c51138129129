#!/usr/bin/env bash
# Checks a Kaldi data dir the way Kaldi's utils/validate_data_dir.sh does, plus hdmole's utt2accent.
# It stops at the first problem and names the file, the line and the fix.
#
# Checked: wav.scp text utt2spk spk2utt utt2accent exist (and feats.scp unless --no-feats);
# every file is UTF-8 (as Kaldi's validate_text.pl requires) without a byte-order mark or CRLF line
# ends; every file is sorted and unique under LC_ALL=C; every line has a key and a value (separated
# by any white space, as Kaldi reads them); transcripts are not empty; wav.scp text utt2accent
# (feats.scp utt2num_frames) have exactly the utterances of utt2spk; spk2utt agrees with utt2spk;
# utterance ids start with their speaker id; with --accents, every accent is listed in that file;
# with --check-audio, every audio file exists.
#
# As in Kaldi, --no-feats, --no-text and --no-wav (and hdmole's --no-accent) may be given bare
# (`validate_data_dir.sh --no-feats data/train`) or with a value (`--no-feats false`).
no_feats=true      # feats.scp is optional (it only exists after feature extraction)
no_text=false      # skip text (e.g. a test set without transcripts)
no_wav=false       # skip wav.scp (e.g. a dir with features only)
no_accent=false    # skip utt2accent (e.g. a corpus whose accents are not known yet)
accents=""         # an accents.txt (one accent name per line): every accent must be in it
check_audio=false  # check that every audio file named in wav.scp exists
help_message="Usage: $0 [options] <data-dir>
 e.g.: $0 --accents data/accents.txt --check-audio true data/train_std
       $0 --no-feats data/train   (Kaldi's bare flags: --no-feats --no-text --no-wav --no-accent)"
# Kaldi's bare flags become `--flag true` for parse_options.sh, which wants a value after each option.
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-feats|--no-text|--no-wav|--no-accent)
      if [ "${2:-}" = true ] || [ "${2:-}" = false ]; then args+=("$1" "$2"); shift 2; else args+=("$1" true); shift; fi ;;
    --) args+=("$@"); break ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}
. "$(dirname "$0")/parse_options.sh" || exit 1
[ $# -eq 1 ] || { printf '%b\n' "$help_message" >&2; exit 1; }
export LC_ALL=C
set -o pipefail

dir=${1%/}
me=validate_data_dir.sh
fail() { echo "$me: $*" >&2; exit 1; }
prefix() { sed "s/^/$me: /" >&2; }
[ -d "$dir" ] || fail "no such directory: $dir"

files=(utt2spk spk2utt)
$no_wav || files+=(wav.scp)
$no_text || files+=(text)
$no_accent || files+=(utt2accent)
$no_feats || files+=(feats.scp)
for f in "${files[@]}"; do
  [ -f "$dir/$f" ] || fail "$dir/$f is missing. Fix: write it (README.md, section \"Data directories\", describes every file)."
done
optional=()
for f in feats.scp utt2num_frames utt2dur; do
  [ -f "$dir/$f" ] && [[ ! " ${files[*]} " == *" $f "* ]] && optional+=("$f")
done

# 0. Encoding: UTF-8, no byte-order mark, no CR (invisible, they would end up inside ids and values).
"$(dirname "$0")/validate_text_encoding.pl" "${files[@]/#/$dir/}" ${optional[@]+"${optional[@]/#/$dir/}"} | prefix || exit 1

# 1. Each file: non-empty, two or more fields per line, keys strictly increasing in byte order
#    (which is what sorted-and-unique under LC_ALL=C means). ("" x) forces string comparison in awk.
for f in "${files[@]}" "${optional[@]}"; do
  [ -s "$dir/$f" ] || fail "$dir/$f is empty. Fix: the data dir has no utterances; rerun its data preparation."
  awk -v file="$dir/$f" -v name="$f" '
    NF == 0 { printf "%s line %d is blank. Fix: delete the line.\n", file, NR; exit 1 }
    NF < 2 {
      if (name == "text") printf "%s line %d: empty transcript for utterance %s. Fix: give it a transcript, or drop it with utils/fix_data_dir.sh.\n", file, NR, $1
      else printf "%s line %d: \"%s\" has no value. Fix: every line is \"<key> <value>\".\n", file, NR, $0
      exit 1
    }
    NR > 1 && ("" $1) == ("" prev) { printf "%s line %d: duplicate key %s. Fix: keep one line per key (utils/fix_data_dir.sh).\n", file, NR, $1; exit 1 }
    NR > 1 && ("" $1) < ("" prev) { printf "%s line %d: not sorted (%s comes after %s). Fix: LC_ALL=C sort %s -o %s, or utils/fix_data_dir.sh.\n", file, NR, $1, prev, file, file; exit 1 }
    { prev = $1 }' "$dir/$f" | prefix || exit 1
done

# 2. The same utterances everywhere: compare each per-utterance file with utt2spk.
per_utt=()
$no_wav || per_utt+=(wav.scp)
$no_text || per_utt+=(text)
$no_accent || per_utt+=(utt2accent)
$no_feats || per_utt+=(feats.scp)
for f in "${per_utt[@]}" "${optional[@]}"; do
  awk -v file="$dir/$f" -v ref="$dir/utt2spk" '
    FNR == NR { inref[$1] = 1; next }
    { seen[$1] = 1; if (!($1 in inref)) { printf "%s line %d: utterance %s is not in %s. Fix: utils/fix_data_dir.sh %s keeps only utterances present in every file.\n", file, FNR, $1, ref, dir; bad = 1; exit 1 } }
    END {
      if (bad) exit 1
      for (u in inref) if (!(u in seen)) { printf "%s has no line for utterance %s (which %s has). Fix: add it, or run utils/fix_data_dir.sh to drop it everywhere.\n", file, u, ref; exit 1 }
    }' dir="$dir" "$dir/utt2spk" "$dir/$f" | prefix || exit 1
done

# 3. Utterance ids start with the speaker id (Kaldi's convention, so that sorting by utterance
#    also groups speakers), and spk2utt is exactly what utt2spk implies.
awk -v file="$dir/utt2spk" 'index($1, $2) != 1 {
    printf "%s line %d: utterance id %s does not start with its speaker id %s. Fix: prefix utterance ids with the speaker id.\n", file, NR, $1, $2; exit 1 }' \
  "$dir/utt2spk" | prefix || exit 1
expected=$(sort -k2,2 -s "$dir/utt2spk" | "$(dirname "$0")/utt2spk_to_spk2utt.pl" | sort -k1,1)
# Compared with its white space normalised: Kaldi reads "spk utt1 utt2" split on any white space.
line=$(diff <(echo "$expected") <(awk '{ $1 = $1; print }' "$dir/spk2utt") | grep -m1 -E '^[0-9]+' | sed -E 's/^[0-9]+(,[0-9]+)?[acd]([0-9]+).*/\2/')
if [ -n "$line" ]; then
  fail "$dir/spk2utt line $line does not agree with $dir/utt2spk. Fix: utils/utt2spk_to_spk2utt.pl $dir/utt2spk > $dir/spk2utt"
fi

# 4. Accents: one token each, and known when an accent list is given.
if ! $no_accent; then
  if [ -n "$accents" ]; then
    [ -f "$accents" ] || fail "accent list $accents does not exist"
    # The list itself, as hdmole reads it (hdmole.data.accents): one name per line, each once; the line
    # order is the domain index, so a blank or doubled line would shift or merge domains.
    [ -s "$accents" ] || fail "accent list $accents is empty. Fix: write one accent name per line (the line order is the domain index)"
    awk -v list="$accents" '
      { name = $0; sub(/^[ \t]+/, "", name); sub(/[ \t\r]+$/, "", name) }
      name == "" || name ~ /[ \t]/ { printf "%s line %d: expected exactly one accent name, got \"%s\". Fix: one name per line, no spaces in it, no blank lines\n", list, NR, $0; exit 1 }
      name in line { printf "%s line %d: accent %s is listed twice (lines %d and %d). Fix: remove one\n", list, NR, name, line[name], NR; exit 1 }
      { line[name] = NR }' "$accents" | prefix || exit 1
    awk -v file="$dir/utt2accent" -v list="$accents" '
      FNR == NR { if (NF) known[$1] = 1; next }
      NF != 2 { printf "%s line %d: expected \"<utt> <accent>\". Fix: one accent name per utterance.\n", file, FNR; exit 1 }
      !($2 in known) { printf "%s line %d: unknown accent %s (not in %s). Fix: add it to %s, or correct the name.\n", file, FNR, $2, list, list; exit 1 }' \
      "$accents" "$dir/utt2accent" | prefix || exit 1
  else
    awk -v file="$dir/utt2accent" 'NF != 2 { printf "%s line %d: expected \"<utt> <accent>\". Fix: one accent name per utterance.\n", file, NR; exit 1 }' \
      "$dir/utt2accent" | prefix || exit 1
  fi
fi

# 5. Audio files exist: a plain entry is "<utt> <path>"; for a pipe entry ("... |") every
#    argument that looks like an audio file must exist.
if $check_audio && ! $no_wav; then
  awk -v file="$dir/wav.scp" '
    function check(p) { if ((getline junk < p) < 0) { printf "%s line %d: audio file %s of utterance %s does not exist. Fix: correct the path, or drop the utterance with utils/fix_data_dir.sh after removing the line.\n", file, NR, p, $1; exit 1 } close(p) }
    $NF == "|" || $NF ~ /\|$/ { for (i = 2; i <= NF; i++) if ($i ~ /\.(wav|flac|sph|mp3|ogg)$/) check($i); next }
    { p = $0; sub(/^[^ \t]+[ \t]+/, "", p); check(p) }' "$dir/wav.scp" | prefix || exit 1
fi

n=$(wc -l <"$dir/utt2spk"); s=$(wc -l <"$dir/spk2utt")
echo "$me: $dir is valid ($n utterances, $s speakers)"
