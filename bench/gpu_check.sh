#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one table, each as a ratio against a baseline measured in the same run:
# scalar RM images/s vs the matmul bound, critic tokens/s in vLLM (8B size), generation images/s rrbench vs raw
# diffusers, one SFT step and one NFT step (memory, seconds per step). Random weights built from configs
# (bench/gpu_configs.py), nothing downloaded. Each part runs under its own timeout; a failed part says FAILED and
# why in its row and the others go on; the exit code is non-zero if any part failed.
#
#   bash bench/gpu_check.sh            # on one GPU, under 8 minutes
#   bash bench/gpu_check.sh --smoke    # the same code paths on the CPU with the tiny test models (CI)
#   PARTS="clip critic" bash bench/gpu_check.sh   # some parts only
set -uo pipefail
cd "$(dirname "$0")/.."
mode=full
[[ "${1:-}" == "--smoke" ]] && mode=smoke
python="${PYTHON:-python}"
dir="$(mktemp -d "${TMPDIR:-/tmp}/rrbench-gpu-check.XXXXXX")"
export GPU_CHECK_DIR="$dir"
trap 'rm -rf "$dir"' EXIT
started=$SECONDS
run_part() {  # PART LIMIT
    local part=$1 limit=$2 status
    echo "[gpu_check] $part (timeout ${limit} s) ..." >&2
    # timeout signals its whole process group: the bench's children and a vLLM server stop with it
    timeout -k 10 "$limit" "$python" bench/gpu_check.py run "$part" --mode "$mode" --out "$dir/$part.json" \
        >"$dir/$part.log" 2>&1
    status=$?
    [[ $status -eq 124 || $status -eq 137 ]] && touch "$dir/$part.timeout"
    [[ $status -ne 0 ]] && tail -n 5 "$dir/$part.log" | sed "s/^/[gpu_check]   $part: /" >&2
    return 0
}
selected=()
while read -r part limit; do
    [[ -n "${PARTS:-}" && " $PARTS " != *" $part "* ]] && continue
    selected+=("$part")
    if [[ $mode == full ]]; then
        run_part "$part" "$limit"  # one GPU: one part at a time
    else
        # the CPU smoke parts are mostly one-thread processes: two side by side on a 2-core machine
        while (($(jobs -rp | wc -l) >= ${SMOKE_JOBS:-2})); do wait -n; done
        run_part "$part" "$limit" &
    fi
done < <("$python" bench/gpu_check.py parts --mode "$mode")
wait
echo "[gpu_check] $mode mode, $((SECONDS - started)) s" >&2
"$python" bench/gpu_check.py table "$dir" --mode "$mode" --only "${selected[*]}"
