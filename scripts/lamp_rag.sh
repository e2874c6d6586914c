#!/usr/bin/env bash
# lamp_rag end to end for one LaMP task: rank the profiles -> merge them with the ranking -> zero-shot
# without profile -> zero-shot with the top-K items -> (TRAIN=1) fine-tune with the top-K items -> a score
# table. Every stage writes under $OUT and a rerun reuses finished generations.
#
#   bash scripts/lamp_rag.sh                                               # LaMP_4 sample, packaged model
#   LIMIT=8 TRAIN=1 EPOCHS=1 bash scripts/lamp_rag.sh                      # quick smoke run, with fine-tuning
#   TASK=LaMP_4 DATA_DIR=../shared/data/gitlamp OUT=runs/lamp_rag/gitlamp bash scripts/lamp_rag.sh
#
# DATA_DIR holds the LaMP files {train,dev}_{questions,outputs}.json. All paths are relative to the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

: "${TASK:=LaMP_4}"                    # task name or alias
: "${DATA_DIR:=data/sample/LaMP_4}"    # folder of the task's questions and outputs files
: "${MODEL:=default}"                  # 'default' (packaged SmolLM2-135M-Instruct), HF folder or .gguf
: "${OUT:=runs/lamp_rag/$TASK}"        # every output of this script
: "${K:=3}"                            # profile items in the prompt
: "${RANKER:=bm25}"                    # bm25 | contriever | recency | random
: "${LIMIT:=}"                         # first N questions per split (empty: all)
: "${BATCH_SIZE:=8}"                   # prompts per generation batch
: "${TRAIN:=0}"                        # 1: also fine-tune on the train split
: "${EPOCHS:=2}"                       # fine-tuning epochs
: "${LORA:=1}"                         # 1: LoRA adapters, 0: all weights

limit=()
if [ -n "$LIMIT" ]; then limit=(--limit "$LIMIT"); fi
lora=()
if [ "$LORA" = 1 ]; then lora=(--lora); fi

# ----------------------------------------------------------------------------- 1. rank profiles
for split in train dev; do
  python -m lamp_rag.rank_profiles --task "$TASK" --ranker "$RANKER" \
    --input_data_addr "$DATA_DIR/${split}_questions.json" --output_ranking_addr "$OUT/rank/${split}_$RANKER.json"
done

# ----------------------------------------------------------------------------- 2. merge with rank
for split in train dev; do
  python -m lamp_rag.merge_with_rank --task "$TASK" \
    --lamp_questions_addr "$DATA_DIR/${split}_questions.json" --lamp_output_addr "$DATA_DIR/${split}_outputs.json" \
    --profile_ranking_addr "$OUT/rank/${split}_$RANKER.json" --merged_output_addr "$OUT/merged/${split}.json"
done

# ----------------------------------------------------------------------------- 3. zero-shot, no profile
python -m lamp_rag.evaluate_llm --task "$TASK" --model_addr "$MODEL" --validation_data "$OUT/merged/dev.json" \
  --output_dir "$OUT/zero_shot_no_profile" --batch_size "$BATCH_SIZE" "${limit[@]}"

# ----------------------------------------------------------------------------- 4. zero-shot, top-K profile
python -m lamp_rag.evaluate_llm --task "$TASK" --model_addr "$MODEL" --validation_data "$OUT/merged/dev.json" \
  --use_profile --is_ranked --num_retrieved "$K" --output_dir "$OUT/zero_shot_${RANKER}_top$K" \
  --batch_size "$BATCH_SIZE" "${limit[@]}"

# ----------------------------------------------------------------------------- 5. fine-tune (TRAIN=1)
if [ "$TRAIN" = 1 ]; then
  python -m lamp_rag.train_llm --task "$TASK" --model_name "$MODEL" "${lora[@]}" \
    --train_data "$OUT/merged/train.json" --validation_data "$OUT/merged/dev.json" \
    --use_profile --is_ranked --num_retrieved "$K" --num_train_epochs "$EPOCHS" \
    --per_device_batch_size "$BATCH_SIZE" --output_dir "$OUT/finetune_${RANKER}_top$K" "${limit[@]}"
fi

# ----------------------------------------------------------------------------- 6. score table
# Rows in stage order (file modification time); eval.report reads the scores.json files, re-scores nothing.
python -m eval.report "$OUT" --title "$TASK dev ($DATA_DIR), $OUT"
