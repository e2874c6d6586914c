#!/usr/bin/env bash
# ROPG end to end for one LaMP task: LLM feedback on single profile items (train and dev) -> merge the shards
# -> train the retriever with KD and with RL -> rank dev profiles with BM25, the untrained encoder and both
# trained ones -> RAG with each ranker's top-K -> feedback agreement, score table and paired bootstraps.
# Every stage writes under $OUT and resumes: a rerun reuses finished generations and checkpoints.
#
#   bash scripts/ropg.sh                                            # LaMP_4 sample, packaged models, minutes
#   TASK=LaMP_4 DATA_DIR=../shared/data/gitlamp OUT=runs/ropg/gitlamp PROFILE_SIZE=4 CTX_SIZE=4 \
#     LIMIT_TRAIN=24 LIMIT_DEV=16 STEPS=100 bash scripts/ropg.sh
#   NPROC=2 bash scripts/ropg.sh                                    # train with torchrun (DDP) on 2 processes
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
: "${MODEL:=default}"                  # the LLM: 'default' (packaged SmolLM2-135M-Instruct), HF folder or .gguf
: "${ENCODER:=auto}"                   # retriever to fine-tune: auto (facebook/contriever if cached, else MiniLM)
: "${OUT:=runs/ropg/$TASK}"            # every output of this script
: "${PROFILE_SIZE:=3}"                 # N: feedback on each of the BM25 top-N items
: "${CTX_SIZE:=3}"                     # candidates per question in training (<= PROFILE_SIZE)
: "${LIMIT_TRAIN:=6}"                  # first N train questions with feedback (empty: all)
: "${LIMIT_DEV:=4}"                    # first N dev questions with feedback, for the agreement table (empty: all)
: "${STEPS:=20}"                       # training steps of KD and of RL
: "${LR:=1e-5}"                        # retriever learning rate (reference: 1e-5)
: "${TEMPERATURE:=1.0}"                # KD temperature
: "${MAX_LENGTH:=512}"                 # query/document tokens in training (the encoder's own limit applies)
: "${NPROC:=1}"                        # >1: torchrun --nproc_per_node NPROC
: "${K:=1}"                            # profile items in the RAG prompt
: "${BATCH_SIZE:=16}"                  # prompts per generation batch

limit_train=(); if [ -n "$LIMIT_TRAIN" ]; then limit_train=(--limit "$LIMIT_TRAIN"); fi
limit_dev=(); if [ -n "$LIMIT_DEV" ]; then limit_dev=(--limit "$LIMIT_DEV"); fi
# shellcheck source=scripts/stage_lib.sh
source scripts/stage_lib.sh

# ----------------------------------------------------------------------------- 1. feedback, 2. merge
for split in train dev; do
  limit=("${limit_train[@]}"); if [ "$split" = dev ]; then limit=("${limit_dev[@]}"); fi
  python -m ropg.profile_item_utilization_scorer --task "$TASK" --model_name "$MODEL" \
    --train_data "$DATA_DIR/${split}_questions.json" --train_outputs "$DATA_DIR/${split}_outputs.json" \
    --profile_size "$PROFILE_SIZE" --output_dir "$OUT/feedback/$split" --batch_size "$BATCH_SIZE" "${limit[@]}"
  python -m ropg.merge_scores --output_dir "$OUT/feedback/$split" --output "$OUT/feedback/$split/merged.json"
done

# ----------------------------------------------------------------------------- 3. train KD and RL
common=(--do_train --task "$TASK" --train_data "$DATA_DIR/train_questions.json"
        --train_outputs "$DATA_DIR/train_outputs.json" --scores_path "$OUT/feedback/train/merged.json"
        --ctx_size "$CTX_SIZE" --total_steps "$STEPS" --lr "$LR" --model_path "$ENCODER"
        --max_query_length "$MAX_LENGTH" --max_doc_length "$MAX_LENGTH"
        --checkpoint_dir "$OUT/checkpoints")
launch ropg.train_kd "${common[@]}" --name kd --temperature "$TEMPERATURE"
launch ropg.train_rl "${common[@]}" --name rl

# ----------------------------------------------------------------------------- 4. rank dev profiles
# Dense rankers see the documents as training did (with ' date: ...', the reference's ROPG documents).
untrained=$(python -c "from lm import resolve_encoder; from ropg.training import CONTRIEVER; print(resolve_encoder('$ENCODER', CONTRIEVER))")
declare -A ranker=([bm25]="--ranker bm25"
                   [dense]="--ranker contriever --use_date --contriever_checkpoint $untrained"
                   [kd]="--ranker contriever --use_date --contriever_checkpoint $OUT/checkpoints/kd/checkpoint/latest"
                   [rl]="--ranker contriever --use_date --contriever_checkpoint $OUT/checkpoints/rl/checkpoint/latest")
for name in bm25 dense kd rl; do
  # shellcheck disable=SC2086
  python -m lamp_rag.rank_profiles --task "$TASK" ${ranker[$name]} \
    --input_data_addr "$DATA_DIR/dev_questions.json" --output_ranking_addr "$OUT/rank/$name/dev.json"
  python -m lamp_rag.merge_with_rank --task "$TASK" \
    --lamp_questions_addr "$DATA_DIR/dev_questions.json" --lamp_output_addr "$DATA_DIR/dev_outputs.json" \
    --profile_ranking_addr "$OUT/rank/$name/dev.json" --merged_output_addr "$OUT/merged/$name/dev.json"
done

# ----------------------------------------------------------------------------- 5. RAG with each ranker
for name in bm25 dense kd rl; do
  python -m lamp_rag.evaluate_llm --task "$TASK" --model_addr "$MODEL" --validation_data "$OUT/merged/$name/dev.json" \
    --use_profile --is_ranked --num_retrieved "$K" --output_dir "$OUT/rag/${name}_top$K" --batch_size "$BATCH_SIZE"
done

# ----------------------------------------------------------------------------- 6. tables
mkdir -p "$OUT/agreement"
python -m ropg.feedback_agreement --task "$TASK" --data "$DATA_DIR/dev_questions.json" \
  --outputs "$DATA_DIR/dev_outputs.json" --scores_path "$OUT/feedback/dev/merged.json" --use_date \
  --encoder "untrained=$untrained" --encoder "kd=$OUT/checkpoints/kd/checkpoint/latest" \
  --encoder "rl=$OUT/checkpoints/rl/checkpoint/latest" --output "$OUT/agreement/agreement.json" \
  | tee "$OUT/agreement/agreement.md"
python -m eval.report "$OUT"/rag/*_top"$K" --title "ROPG $TASK dev, RAG top-$K" --output "$OUT/report.md"
for name in dense kd rl; do
  python -m eval.eval_task --golds_json "$DATA_DIR/dev_outputs.json" --preds_json "$OUT/rag/bm25_top$K/predictions.json" \
    --compare "$OUT/rag/${name}_top$K/predictions.json" --output_file "$OUT/compare/bm25_vs_$name.json"
done
for name in kd rl; do
  python -m eval.eval_task --golds_json "$DATA_DIR/dev_outputs.json" --preds_json "$OUT/rag/dense_top$K/predictions.json" \
    --compare "$OUT/rag/${name}_top$K/predictions.json" --output_file "$OUT/compare/dense_vs_$name.json"
done
echo "feedback agreement: $OUT/agreement/agreement.md"
echo "RAG scores: $OUT/report.md; paired bootstraps: $OUT/compare/"
