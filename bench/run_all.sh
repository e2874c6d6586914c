#!/usr/bin/env bash
# Runs every benchmark in bench/ and writes bench/results.md; the logic is in bench/collect.py
# (`python -m bench.collect --help`). Usage: bash bench/run_all.sh [--quick] [--only NAME ...] [--rerun]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# torch's OpenMP threads spin-wait by default and slow everything else down on a loaded machine.
export OMP_WAIT_POLICY=PASSIVE
exec python -m bench.collect "$@"
