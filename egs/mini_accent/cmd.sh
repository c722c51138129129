# The job runners of this recipe's parallel stages (Kaldi's and ESPnet's cmd.sh), sourced by
# ../TEMPLATE/hdmole.sh; its --train-cmd/--decode-cmd/--cuda-cmd options override them for one run.
#   train_cmd   CPU jobs            decode_cmd  decoding jobs (--decode-nj N of them, each on 1/N of every test set)
#   cuda_cmd    GPU jobs
# utils/run.pl runs the jobs on this machine (the resource options are accepted and ignored).
# On a SLURM cluster use utils/slurm.pl: the same arguments, one job array submitted with sbatch --wait;
# --mem (per CPU), --num-threads, --gpu N and --time become sbatch arguments through conf/slurm.conf if the
# recipe has one (partition, account: Kaldi's format, described at the top of utils/slurm.pl), else
# through its built-in rules. For example:
#   train_cmd="utils/slurm.pl --mem 4G --time 4:00:00"
#   decode_cmd="utils/slurm.pl --mem 4G --num-threads 2"
#   cuda_cmd="utils/slurm.pl --gpu 1 --mem 16G"
train_cmd="utils/run.pl"
decode_cmd="utils/run.pl"
cuda_cmd="utils/run.pl"
