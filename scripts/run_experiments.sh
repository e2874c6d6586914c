#!/usr/bin/env bash
# Logit-adjustment grid: every task in $TASKS, all $BETAS in one run per task (one shared baseline),
# outputs under $OUTPUT_ROOT/<task>/<token map>. Re-running resumes: finished (beta, seed) runs are reused.
#
#   bash scripts/run_experiments.sh
#   TASKS="LongLaMP_2" DATA_PATH=../shared/data/gitlamp_long/val.json NUM_USERS=32 bash scripts/run_experiments.sh
#   TOKEN_MAP=unigram BETAS="0 0.5 1" EXTRA_ARGS="--do_sample --num_seeds 3" bash scripts/run_experiments.sh
#
# Environment (defaults): TASKS ("LongLaMP_2 LongLaMP_3 LongLaMP_4"), BETAS ("0 0.05 0.1 0.2"),
# NUM_USERS (10), MODEL (default), TOKEN_MAP (sbert_vocab), MAX_NEW_TOKENS (128), BATCH_SIZE (8),
# DATA_PATH (empty: each task's embedded sample; set it only with a single task), OUTPUT_ROOT
# (runs/logit_adjust), EXTRA_ARGS (more logit_adjust.main flags).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: [VAR=value ...] bash scripts/run_experiments.sh"
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

cd "$(dirname "$0")/.."
: "${TASKS:=LongLaMP_2 LongLaMP_3 LongLaMP_4}"
: "${BETAS:=0 0.05 0.1 0.2}"
: "${NUM_USERS:=10}"
: "${MODEL:=default}"
: "${TOKEN_MAP:=sbert_vocab}"
: "${MAX_NEW_TOKENS:=128}"
: "${BATCH_SIZE:=8}"
: "${DATA_PATH:=}"
: "${OUTPUT_ROOT:=runs/logit_adjust}"
: "${EXTRA_ARGS:=}"

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

for task in $TASKS; do
  # ----------------------------------------------------------------------------- $task
  data_args=()
  if [ -n "$DATA_PATH" ]; then data_args=(--data_path "$DATA_PATH"); fi
  # shellcheck disable=SC2086  # BETAS and EXTRA_ARGS are word lists on purpose
  python -m logit_adjust.main --task "$task" --model_name "$MODEL" --num_users "$NUM_USERS" \
    --beta $BETAS --token_map "$TOKEN_MAP" --max_new_tokens "$MAX_NEW_TOKENS" --batch_size "$BATCH_SIZE" \
    "${data_args[@]}" --output_dir "$OUTPUT_ROOT/$task/$TOKEN_MAP" $EXTRA_ARGS
done
echo "tables: $OUTPUT_ROOT/<task>/$TOKEN_MAP/results.md"
