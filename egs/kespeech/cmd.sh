# The job runners of this recipe's parallel stages (Kaldi's and ESPnet's cmd.sh), sourced by
# ../TEMPLATE/hdmole.sh; its --train-cmd/--decode-cmd/--cuda-cmd options override them for one run.
#   train_cmd   CPU jobs            decode_cmd  decoding jobs (--decode-nj N of them, each on 1/N of every test set)
#   cuda_cmd    GPU jobs
# utils/run.pl runs the jobs on this machine: --gpu N gives each job N cards of its own (CUDA_VISIBLE_DEVICES,
# round robin over the node's cards; nothing without cards), the other resource options are ignored.
# On a SLURM cluster use utils/slurm.pl: the same arguments, one job array submitted with sbatch --wait;
# --mem (per CPU), --num-threads, --gpu N and --time become sbatch arguments through conf/slurm.conf if the
# recipe has one (partition, account: Kaldi's format, described at the top of utils/slurm.pl), else
# through its built-in rules. For example:
#   train_cmd="utils/slurm.pl --mem 4G --time 4:00:00"
#   decode_cmd="utils/slurm.pl --mem 4G --num-threads 2"
#   cuda_cmd="utils/slurm.pl --gpu 1 --mem 16G"   # decoding on GPUs: decode_cmd="utils/slurm.pl --gpu 1 --mem 16G" and --decode-args "--device cuda"
train_cmd="utils/run.pl"
decode_cmd="utils/run.pl --gpu 1"   # with --ngpu N, --decode-nj N jobs: one card each (no card: CPU jobs)
cuda_cmd="utils/run.pl"
