# Where the corpora are (the one place to edit; run.sh --kespeech-root/--aishell-root override it).
# KESPEECH: the KeSpeech v1.0 root, the directory holding Tasks/ and Audio/.
# AISHELL:  the directory holding data_aishell/ (openslr.org/33: data_aishell.tgz, wav/*.tar.gz unpacked).
KESPEECH=${KESPEECH:-/data/corpora/KeSpeech}
AISHELL=${AISHELL:-/data/corpora/aishell}
