#!/usr/bin/env bash
# RSPG end to end for one task: score every retriever arm on train and dev (LLM output + per-question
# metric) -> create_data -> train the Pre and Post selectors -> validate on dev -> one table each.
# Every stage writes under $OUT; a rerun reuses finished generations and resumes training.
#
#   bash scripts/rspg.sh                                           # LaMP_4 sample, 8 questions a split
#   TASK=LaMP_4 DATA_DIR=../shared/data/gitlamp LIMIT= OUT=runs/rspg/gitlamp STEPS=300 bash scripts/rspg.sh
#
# An arm is "no_profile" or "<retriever>_<k>" with retriever bm25 | contriever | recency | random
# (contriever = the dense ranker on --retriever_model, default the packaged MiniLM).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

: "${TASK:=LaMP_4}"                      # task name or alias
: "${DATA_DIR:=data/sample/LaMP_4}"      # folder of {train,dev}_{questions,outputs}.json
: "${MODEL:=default}"                    # the LLM: 'default' (packaged SmolLM2-135M-Instruct), HF folder, .gguf
: "${OUT:=runs/rspg/$TASK}"              # every output of this script
: "${ARMS:=no_profile bm25_1 recency_1 contriever_1}"   # the retrievers the selector chooses among
: "${METRIC:=}"                          # label metric (empty: the task's first metric)
: "${LIMIT:=8}"                          # first N questions per split (empty: all)
: "${BATCH_SIZE:=16}"                    # prompts per generation batch
: "${NUM_BEAMS:=1}"                      # the reference uses 4
: "${MAX_ITEM_TOKENS:=64}"               # chat prompts: tokens kept of each profile item's text (empty: all)
: "${ENCODER:=auto}"                     # selector encoder: auto = Longformer if cached, else packaged MiniLM
: "${STEPS:=40}"                         # selector optimizer steps
: "${LR:=1e-5}"                          # selector learning rate (the reference's default)
: "${TEMPERATURE:=1}"                    # selector loss temperature
: "${NPROC:=1}"                          # >1: train with torchrun --nproc_per_node $NPROC (DDP, gloo on CPU)

limit=(); if [ -n "$LIMIT" ]; then limit=(--limit "$LIMIT"); fi
item_cut=(); if [ -n "$MAX_ITEM_TOKENS" ]; then item_cut=(--max_item_tokens "$MAX_ITEM_TOKENS"); fi
if [ -z "$METRIC" ]; then
  METRIC=$(python -c "import sys; from data.tasks import get_task; print(get_task(sys.argv[1]).metrics[0])" "$TASK")
fi
# shellcheck source=scripts/stage_lib.sh
source scripts/stage_lib.sh

# ----------------------------------------------------------------------------- 1. per-retriever feedback
for split in train dev; do
  for arm in $ARMS; do
    profile=()
    if [ "$arm" != no_profile ]; then
      profile=(--use_profile --retriever "${arm%_*}" --num_retrieved "${arm##*_}")
    fi
    python -m rspg.retriever_utilization_scorer --task "$TASK" --model_name "$MODEL" \
      --data_addr "$DATA_DIR/${split}_questions.json" --data_outputs "$DATA_DIR/${split}_outputs.json" \
      --output_dir "$OUT/$split/$arm" --batch_size "$BATCH_SIZE" --num_beams "$NUM_BEAMS" \
      "${profile[@]}" "${item_cut[@]}" "${limit[@]}"
  done
done

# ----------------------------------------------------------------------------- 2. selector data
for split in train dev; do
  arm_dirs=(); for arm in $ARMS; do arm_dirs+=("$OUT/$split/$arm"); done
  python -m rspg.create_data --retrivers_data_addr "${arm_dirs[@]}" --metric "$METRIC" \
    --task_inputs_addr "$DATA_DIR/${split}_questions.json" --task_outputs_addr "$DATA_DIR/${split}_outputs.json" \
    --output_dataset_addr "$OUT/$split/selection.json" "${limit[@]}"
done

# ----------------------------------------------------------------------------- 3. train + validate Pre, Post
for kind in Pre Post; do
  launch rspg.rspg --do_train --rspg_type "$kind" --task "$TASK" --name "$kind" \
    --checkpoint_dir "$OUT/selector" --train_data "$OUT/train/selection.json" \
    --val_data "$OUT/dev/selection.json" --val_lamp_golds "$DATA_DIR/dev_outputs.json" \
    --encoder "$ENCODER" --total_steps "$STEPS" --learning_rate "$LR" --temperature "$TEMPERATURE"
done

# ----------------------------------------------------------------------------- 4. tables
for kind in Pre Post; do cat "$OUT/selector/$kind/table.md"; echo; done
