#!/usr/bin/env bash
# CURP stage 0 + 1: embed the history items of the training and evaluation examples, then train the
# product-quantized codebook (balanced k-means start). Every knob is an environment variable:
#   OUT_ROOT=runs/curp TASK=LaMP_4 DATA_DIR=data/sample/LaMP_4 CODEBOOK_SIZE=64 bash step1.sh
#   NPROC=2 bash step1.sh           # the codebook trains under torchrun with 2 processes
# Outputs: $OUT_ROOT/embeddings/{train,eval}.safetensors, $OUT_ROOT/stage1/ (codebook.pt, usage.json, usage.png).
set -euo pipefail

: "${OUT_ROOT:=runs/curp}"                           # every stage and inference.py read and write here
: "${TASK:=LaMP_4}"                                  # a registry task, or "alignx" (then set the files below)
: "${DATA_DIR:=data/sample/$TASK}"                   # the embedded sample by default
: "${TRAIN_DATA:=$DATA_DIR/train_questions.json}"
: "${TRAIN_OUTPUTS:=$DATA_DIR/train_outputs.json}"   # empty when the data file holds the answers (AlignX)
: "${EVAL_DATA:=$DATA_DIR/dev_questions.json}"
: "${EVAL_OUTPUTS:=$DATA_DIR/dev_outputs.json}"
: "${LIMIT:=}"                                       # first N examples of each split (empty: all)
: "${TRAIN_ITEMS:=}"                                 # first N history items per training example (empty: all)
: "${EVAL_ITEMS:=}"                                  # the same for the evaluation split (the projector reads his_len)
: "${ENCODER:=default}"                              # packaged MiniLM; or a cached facebook/contriever
: "${DEVICE:=}"                                      # empty: cuda when present
: "${NUM_SUBSPACES:=2}"                              # CURP_code: 2
: "${CODEBOOK_SIZE:=64}"                             # CURP_code: 1000 (needs >= that many history items)
: "${INIT_SAMPLE_SIZE:=10000}"
: "${GROUP_SIZE:=8}"
: "${BATCH_SIZE:=32}"
: "${LEARNING_RATE:=5e-4}"
: "${NUM_EPOCHS:=10}"
: "${SEED:=0}"
: "${NPROC:=1}"                                      # > 1: torchrun --nproc_per_node $NPROC

# shellcheck source=scripts/stage_lib.sh
source "$(dirname "$0")/scripts/stage_lib.sh"

# ---------------------------------------------------------------- stage 0: history embeddings
for split in train eval; do
    if [ "$split" = train ]; then data=$TRAIN_DATA outputs=$TRAIN_OUTPUTS items=$TRAIN_ITEMS
    else data=$EVAL_DATA outputs=$EVAL_OUTPUTS items=$EVAL_ITEMS; fi
    mapfile -t extra < <(optional --outputs "$outputs"; optional --limit "$LIMIT"; optional --max_items "$items"
                         optional --device "$DEVICE")
    python -m curp.encode --task "$TASK" --data "$data" --encoder "$ENCODER" \
        --output "$OUT_ROOT/embeddings/$split.safetensors" "${extra[@]}"
done

# ---------------------------------------------------------------- stage 1: PQ codebook
launch curp.train_codebook --embeddings "$OUT_ROOT/embeddings/train.safetensors" --output_dir "$OUT_ROOT/stage1" \
    --num_subspaces "$NUM_SUBSPACES" --codebook_size "$CODEBOOK_SIZE" --init_sample_size "$INIT_SAMPLE_SIZE" \
    --group_size "$GROUP_SIZE" --batch_size "$BATCH_SIZE" --learning_rate "$LEARNING_RATE" \
    --num_epochs "$NUM_EPOCHS" --seed "$SEED"
