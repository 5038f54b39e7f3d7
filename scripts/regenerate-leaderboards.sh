#!/usr/bin/env bash
# Regenerate leaderboards/ from what runs offline: the embedded `sanity` task (t2i and edit variants) with the
# weight-free baselines, plus `--order both` runs that show position bias. Runs and their response cache go to a
# temporary folder (the cache only spares the both-orders runs from scoring each image again), so the output
# depends only on the code. Published numbers come from the file shipped in the package
# (rrbench/leaderboard/reported.json). OUT is passed as --out explicitly: the command's own default writes beside
# the runs, never into a checkout. Usage: bash scripts/regenerate-leaderboards.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-leaderboards}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
baselines=classical-iqa,random,constant,always-first
for variant in t2i edit; do
  rrbench run --task sanity -T variant=$variant --model $baselines --output "$runs" --cache "$runs/cache.sqlite" --quiet >/dev/null
  rrbench run --task sanity -T variant=$variant --model classical-iqa,always-first --order both \
    --output "$runs" --cache "$runs/cache.sqlite" --quiet >/dev/null
done
rrbench leaderboard "$runs" --out "$out" --plots all
