#!/usr/bin/env bash
# CoPe end to end for one task: 0. the OPPU per-user folder -> 1. TAM (non-target users) -> 2. one OPPU
# adapter per target user -> 3. pseudo-negatives from the TAM -> 4. negative selection -> 5. per-user DPO,
# with predictions of five variants (TAM, OPPU, OPPU+CD, OPPU+DPO, OPPU+DPO+CD), each a run folder scored by
# eval, then a table of the five and paired-bootstrap intervals of each against the TAM.
# Every stage resumes: a rerun skips finished users, adapters and generations.
#
#   bash scripts/cope.sh                                  # LaMP_4 sample, packaged model, 2 users: minutes
#   DATA_DIR=../shared/data/gitlamp USERS=4 HISTORY=6 WORDS=48 OTHERS=32 EPOCHS=2 OUT=runs/cope/gitlamp \
#     bash scripts/cope.sh
#   TASK=news_headline DATA_DIR=path/to/oppu_folder bash scripts/cope.sh
#
# DATA_DIR is either an OPPU folder (user_top_100_history.json, its label file, user_others.json) or a
# LaMP folder with {train,dev}_{questions,outputs}.json: then the target users are the first USERS dev
# users with the longest histories and the non-target users are every train user. Paths are relative to the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

: "${TASK:=news_headline}"             # CoPe or registry task name
: "${DATA_DIR:=data/sample/LaMP_4}"    # OPPU folder, or LaMP folder with train/dev files
: "${MODEL:=default}"                  # 'default' (packaged SmolLM2-135M-Instruct), HF folder
: "${OUT:=runs/cope/$TASK}"            # every output of this script
: "${USERS:=2}"                        # number of target users
: "${HISTORY:=6}"                      # history items per user used for training (empty: all)
: "${WORDS:=768}"                      # history fields and query inputs cut to their first N words
: "${OTHERS:=}"                        # non-target users the TAM trains on (empty: all)
: "${EPOCHS:=1}"                       # epochs of the TAM and of each OPPU adapter (DPO: 1)
: "${ALPHA:=0.1}"                      # contrastive alpha
: "${LR:=5e-4}"                        # OPPU learning rate (reference 1e-4 with ~100 items; few items need more)
: "${DPO_LR:=5e-5}"                    # DPO learning rate (reference 5e-6)
: "${RESPONSES:=3}"                    # pseudo-negatives per history item
: "${MAX_NEW_TOKENS:=}"                # new tokens per output (empty: the task's length)
: "${BOOTSTRAP:=1000}"                 # paired bootstrap resamples

common=(--task_name "$TASK" --data_path "$OUT/data" --output_dir "$OUT" --model_name "$MODEL" --num_users "$USERS")
common+=(--max_words "$WORDS")
if [ -n "$HISTORY" ]; then common+=(--max_history "$HISTORY"); fi
tam_data=()
if [ -n "$OTHERS" ]; then tam_data=(--num_others "$OTHERS"); fi
decode=()
if [ -n "$MAX_NEW_TOKENS" ]; then decode=(--max_new_tokens "$MAX_NEW_TOKENS"); fi

# ----------------------------------------------------------------------------- 0. the OPPU folder
if [ -f "$DATA_DIR/user_top_100_history.json" ]; then
  mkdir -p "$OUT/data"
  cp "$DATA_DIR"/user_top_100_history.json "$DATA_DIR"/user_others.json "$OUT/data/"
  cp "$DATA_DIR"/user_top_100_history_label.json "$OUT/data/" 2>/dev/null || true
else
  python -m data.convert to-oppu --task "$TASK" --questions "$DATA_DIR/dev_questions.json" \
    --outputs "$DATA_DIR/dev_outputs.json" --output_dir "$OUT/data" --num_users "$USERS" --select longest
  # every train user is a non-target user: convert them all as "targets" and use that file as user_others.json
  python -m data.convert to-oppu --task "$TASK" --questions "$DATA_DIR/train_questions.json" \
    --outputs "$DATA_DIR/train_outputs.json" --output_dir "$OUT/train_users" --num_users 1000000 --select first
  cp "$OUT/train_users/user_top_100_history.json" "$OUT/data/user_others.json"
fi

# ----------------------------------------------------------------------------- 1. TAM (-> TAM/)
python -m cope.tam "${common[@]}" "${tam_data[@]}" --batch_size 8 --max_epoch "$EPOCHS" --is_train --is_test "${decode[@]}"

# ----------------------------------------------------------------------------- 2. OPPU (-> OPPU/, OPPU+CD/)
python -m cope.oppu_sft "${common[@]}" --batch_size 4 --max_epoch "$EPOCHS" --learning_rate "$LR" --is_train
python -m cope.oppu_sft "${common[@]}" "${decode[@]}"
python -m cope.oppu_sft "${common[@]}" "${decode[@]}" --is_cd --contrastive_alpha "$ALPHA" --repetition_penalty 1.0

# ----------------------------------------------------------------------------- 3-4. pseudo-negatives
python -m cope.generate_pseudo_negatives "${common[@]}" --response_num "$RESPONSES" --temperature 1.0
python -m cope.compute_scores "${common[@]}" --std max

# ----------------------------------------------------------------------------- 5. DPO (-> OPPU+DPO/, OPPU+DPO+CD/)
python -m cope.oppu_sft_dpo "${common[@]}" --batch_size 8 --max_epoch 1 --learning_rate "$DPO_LR" \
  --dpo_beta 0.01 --negative_sampling_method pseudo --mode max --is_train
python -m cope.oppu_sft_dpo "${common[@]}" "${decode[@]}"
python -m cope.oppu_sft_dpo "${common[@]}" "${decode[@]}" --is_cd --contrastive_alpha "$ALPHA" --repetition_penalty 1.0

# ----------------------------------------------------------------------------- table and intervals
python -m eval.report "$OUT/TAM" "$OUT/OPPU" "$OUT/OPPU+CD" "$OUT/OPPU+DPO" "$OUT/OPPU+DPO+CD" \
  --output "$OUT/results.md"
golds="$OUT/data/user_top_100_history_label.json"
for variant in OPPU OPPU+CD OPPU+DPO OPPU+DPO+CD; do
  python -m eval.eval_task --golds_json "$golds" --preds_json "$OUT/TAM/predictions.json" \
    --compare "$OUT/$variant/predictions.json" --metrics rouge-1 rouge-L meteor \
    --bootstrap_samples "$BOOTSTRAP" --output_file "$OUT/compare/$variant.json"
done
echo "table: $OUT/results.md; comparisons with the TAM: $OUT/compare/"
