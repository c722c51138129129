# How ../TEMPLATE/hdmole.sh starts a training (sourced, not run): python on one CPU or GPU, torchrun for
# several GPUs on one node, and torchrun's rendezvous for several nodes, as ESPnet and WeNet document it:
#
#   one node, N GPUs        torchrun --standalone --nproc_per_node N
#   M nodes, static         torchrun --nnodes M --node_rank R --master_addr HOST --master_port PORT --nproc_per_node N
#                           (the same ./run.sh on every node, each with its --node-rank 0..M-1; node 0 is HOST)
#   M nodes, c10d rendezvous torchrun --nnodes M --rdzv_backend c10d --rdzv_endpoint HOST:PORT --rdzv_id ID
#                           (no node rank: torchrun assigns them; the same ./run.sh on every node)
#
# Uses ngpu, num_nodes, node_rank, master_addr, master_port, rdzv_endpoint, rdzv_id (hdmole.sh's options).

# train_launcher <exp dir>: prints the launcher's words, one per line; exits 1 with the fix on bad options.
train_launcher() {
  local exp=$1 nproc=$ngpu
  local fail="train_launcher: "
  if [ "$num_nodes" -le 1 ]; then
    [ "$node_rank" -eq 0 ] || { echo "${fail}--node-rank $node_rank needs --num-nodes > 1" >&2; return 1; }
    if [ "$ngpu" -gt 0 ]; then
      printf '%s\n' torchrun --standalone --nproc_per_node "$ngpu" -m hdmole.bin.train
    else
      printf '%s\n' python -m hdmole.bin.train
    fi
    return 0
  fi
  # Several nodes: ngpu is per node; on CPUs (ngpu 0) each node runs one process (gloo).
  [ "$nproc" -gt 0 ] || nproc=1
  local words=(torchrun --nnodes "$num_nodes" --nproc_per_node "$nproc")
  if [ -n "$rdzv_endpoint" ]; then
    [ -z "$master_addr" ] || { echo "${fail}give --rdzv-endpoint or --master-addr, not both" >&2; return 1; }
    [[ "$rdzv_endpoint" == *:* ]] || { echo "${fail}--rdzv-endpoint '$rdzv_endpoint' needs a port: HOST:PORT" >&2; return 1; }
    # The same id on every node, and a new one per training: the exp dir names it.
    local id=${rdzv_id:-$(printf '%s' "$exp" | tr -c 'A-Za-z0-9_\n' '_')}
    words+=(--rdzv_backend c10d --rdzv_endpoint "$rdzv_endpoint" --rdzv_id "$id")
  elif [ -n "$master_addr" ]; then
    if ! [[ "$node_rank" =~ ^[0-9]+$ ]] || [ "$node_rank" -ge "$num_nodes" ]; then
      echo "${fail}--node-rank must be 0..$((num_nodes - 1)) with --num-nodes $num_nodes, not '$node_rank'" >&2; return 1
    fi
    words+=(--node_rank "$node_rank" --master_addr "$master_addr" --master_port "$master_port")
  else
    echo "${fail}--num-nodes $num_nodes needs --master-addr HOST (node 0's address, with --node-rank on every node)" \
         "or --rdzv-endpoint HOST:PORT" >&2
    return 1
  fi
  printf '%s\n' "${words[@]}" -m hdmole.bin.train
}

# is_first_node: true on the node that runs the steps other than training (features, tokenizer, decoding,
# report): node 0, or the only node. With --rdzv-endpoint the ranks are torchrun's: --node-rank still says
# which node does the rest (0 on one of them, anything else on the others).
is_first_node() { [ "$node_rank" -eq 0 ]; }
