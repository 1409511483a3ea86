#!/bin/sh
# The sweep in 4 shards on the machines GNU parallel reaches over ssh (or locally with -j4 and no
# --sshlogin), then one merged transcript that 'sdrepl run --check' verifies.
#
# Every machine needs sdrepl, the same model file at the same path, and this folder (shared, or
# copied with --transferfile / --basefile). Each shard records its transcript in shards/ and
# autosaves its images in generated_images/ of the machine that made them (--return brings them back).
set -e
MODEL=/models/v1-5-pruned-emaonly.safetensors
N=4

parallel --jobs 1 --sshlogin node1,node2,node3,node4 --workdir "$PWD" \
  --return 'shards/{}' --return generated_images --cleanup \
  sdrepl --sessions 'shards/{}' run --shard '{}'/$N --model $MODEL sweep.sdscript ::: $(seq 1 $N)

sdrepl merge shards/*/*.sdscript -o sweep-all.sdscript
sdrepl run --check sweep-all.sdscript     # optional: regenerates every image and compares its hash
sdrepl export sweep-all.sdscript -o sweep.html
