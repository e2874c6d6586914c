#!/usr/bin/env bash
# Every method on the same users of each task, scored by eval/, with paired intervals, plots and cost.
# Set-up runs first (scripts/setup.sh, idempotent); a rerun reuses every finished step.
#
#   bash scripts/leaderboard.sh --quick                          # the sample, quick cells -> runs/leaderboard/
#   bash scripts/leaderboard.sh --task LaMP_4 --data ../shared/data/gitlamp --out runs/leaderboard_gitlamp
#   bash scripts/leaderboard.sh --help                           # every flag (python -m leaderboard)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
# OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP threads sleep instead of spinning on the few cores.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
started=$SECONDS
python -m leaderboard "$@"
echo "leaderboard: done in $((SECONDS - started)) s (set-up not included)"
