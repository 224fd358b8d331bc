#!/bin/sh
# Compares builds of the module in V8: runs the in-VM profile's allowed cached-token 1 KiB
# scenario on each build in turn, RUNS times over (each run a fresh Node process, alternating
# builds, so a change of the machine's speed between runs falls on all of them), and prints each
# build's `module us` per run, sorted.
#
#   tests/vmprof/compare.sh RUNS before.wasm after.wasm [...]
set -eu
runs=$1
shift
here=$(dirname "$0")
for _ in $(seq "$runs"); do
  for wasm in "$@"; do
    us=$(node --no-warnings "$here/profile.mjs" --iterations 2000 --only "cached token, 1 KiB" --wasm "$wasm" |
      awk '/^allowed, cached token, 1 KiB  / { print $(NF - 1) }')
    echo "$wasm $us"
  done
done | sort -k1,1 -k2,2n | awk '{ runs[$1] = runs[$1] " " $2 } END { for (w in runs) print w ":" runs[w] }'
