#!/usr/bin/env bash
# CURP stage 2: train the MLP projector into the frozen LLM on the stage-1 outputs under $OUT_ROOT, then
# (RUN_INFERENCE=1, the default) answer the evaluation examples with python inference.py.
#   OUT_ROOT=runs/curp MODEL=default HIS_LEN=8 bash step2.sh
#   NPROC=2 bash step2.sh           # the projector trains under torchrun with 2 processes
# Outputs: $OUT_ROOT/stage2/projector.pt; $OUT_ROOT/inference/ (run folder: predictions.json, scores.json, ...).
set -euo pipefail

: "${OUT_ROOT:=runs/curp}"                 # where step1.sh wrote the embeddings and the codebook
: "${MODEL:=default}"                      # packaged SmolLM2-135M-Instruct; or an HF folder / cached hub id
: "${DEVICE:=}"                            # empty: cuda when present
: "${HIS_LEN:=8}"                          # history items = <USR_EMB> soft tokens (inference reads it back)
: "${HIDDEN_DIM:=}"                        # projector hidden width (empty: the LLM's hidden size)
: "${MAX_QUESTION_TOKENS:=256}"
: "${MAX_ANSWER_TOKENS:=128}"
: "${BATCH_SIZE:=4}"
: "${LEARNING_RATE:=1e-4}"
: "${NUM_EPOCHS:=1}"
: "${SEED:=0}"
: "${NPROC:=1}"                            # > 1: torchrun --nproc_per_node $NPROC
: "${RUN_INFERENCE:=1}"
: "${GEN_BATCH_SIZE:=16}"

# shellcheck source=scripts/stage_lib.sh
source "$(dirname "$0")/scripts/stage_lib.sh"
mapfile -t extra < <(optional --device "$DEVICE"; optional --hidden_dim "$HIDDEN_DIM")

# ---------------------------------------------------------------- stage 2: projector
launch curp.train_projector --embeddings "$OUT_ROOT/embeddings/train.safetensors" --codebook "$OUT_ROOT/stage1" \
    --output_dir "$OUT_ROOT/stage2" --model_name "$MODEL" --his_len "$HIS_LEN" \
    --max_question_tokens "$MAX_QUESTION_TOKENS" --max_answer_tokens "$MAX_ANSWER_TOKENS" \
    --batch_size "$BATCH_SIZE" --learning_rate "$LEARNING_RATE" --num_epochs "$NUM_EPOCHS" --seed "$SEED" "${extra[@]}"

# ---------------------------------------------------------------- inference on the evaluation split
if [ "$RUN_INFERENCE" = 1 ]; then
    mapfile -t device < <(optional --device "$DEVICE")
    OUT_ROOT="$OUT_ROOT" python inference.py --batch_size "$GEN_BATCH_SIZE" "${device[@]}"
fi
