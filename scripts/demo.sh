#!/usr/bin/env bash
# The quick-start demo on the embedded synthetic sample with the packaged default model (SmolLM2-135M-Instruct):
#   1. lamp_rag (scripts/lamp_rag.sh): BM25-rank the LaMP_4 profiles, generate headlines for the dev split
#      without and with the top-3 profile items, score both with eval/;
#   2. logit_adjust: LongLaMP_2 abstracts for the first few users, beta 0 (baseline) and 0.1;
#   3. one table of every setting (python -m eval.report), also written to $OUT/results.md;
#   4. a short leaderboard (python -m leaderboard --quick): no profile, RAG BM25 and logit adjustment on the
#      first few LaMP_4 dev users, with paired-bootstrap intervals, wall time, memory ($OUT/leaderboard/).
# Set-up runs first (scripts/setup.sh, idempotent). A rerun reuses every finished generation.
#
#   bash scripts/demo.sh                       # -> runs/demo/
#   LIMIT=8 LOGIT_ADJUST=0 LEADERBOARD=0 bash scripts/demo.sh   # quicker: 8 LaMP_4 questions, steps 2 and 4 skipped
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/setup.sh
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
# OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP threads sleep instead of spinning on the few cores.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE

: "${OUT:=runs/demo}"          # every output of the demo
: "${MODEL:=default}"          # 'default' (packaged SmolLM2-135M-Instruct), HF folder or .gguf
: "${LIMIT:=}"                 # first N LaMP_4 questions per split (empty: all 24 of the sample)
: "${LOGIT_ADJUST:=1}"         # 0: skip the logit_adjust step
: "${LA_USERS:=8}"             # logit_adjust: first N users of the LongLaMP_2 sample (1 question each)
: "${LA_BETA:=0.1}"            # logit_adjust: bias strength compared with beta 0
: "${LA_TOKENS:=128}"          # logit_adjust: new tokens per abstract (the registry's default is longer)
: "${LEADERBOARD:=1}"          # 0: skip the closing leaderboard
: "${LB_USERS:=8}"             # leaderboard: first N LaMP_4 dev users

# ----------------------------------------------------------------------------- 1. lamp_rag on LaMP_4
echo "== lamp_rag: LaMP_4 sample, BM25 top-3 profile items vs no profile"
TASK=LaMP_4 DATA_DIR=data/sample/LaMP_4 MODEL="$MODEL" OUT="$OUT/lamp_rag" K=3 RANKER=bm25 LIMIT="$LIMIT" \
  BATCH_SIZE=8 TRAIN=0 bash scripts/lamp_rag.sh

# ----------------------------------------------------------------------------- 2. logit_adjust on LongLaMP_2
report=("$OUT/lamp_rag")
if [ "$LOGIT_ADJUST" = 1 ]; then
  echo "== logit_adjust: LongLaMP_2 sample, first $LA_USERS users, beta $LA_BETA vs 0"
  python -m logit_adjust.main --task LongLaMP_2 --model_name "$MODEL" --num_users "$LA_USERS" \
    --beta 0 "$LA_BETA" --max_new_tokens "$LA_TOKENS" --batch_size 8 --output_dir "$OUT/logit_adjust"
  report+=("$OUT/logit_adjust")
fi

# ----------------------------------------------------------------------------- 3. one table
python -m eval.report "${report[@]}" --metrics rouge-1 rouge-L --output "$OUT/results.md" \
  --title "Demo: synthetic sample, model $MODEL (n = scored predictions; numbers say nothing about real text)"

scope="LaMP_4: ${LIMIT:-all} dev questions of data/sample/LaMP_4 (K=3, BM25)"
if [ "$LOGIT_ADJUST" = 1 ]; then
  scope+="; logit_adjust: first $LA_USERS users of data/sample/LongLaMP_2, $LA_TOKENS new tokens, greedy"
fi
echo
echo "Scope: $scope."
echo "Outputs:"
row() { printf '  %-42s %s\n' "$1" "$2"; }
row "$OUT/results.md" "the table above"
row "$OUT/lamp_rag/rank/, merged/" "BM25 rankings; the questions merged with them"
row "$OUT/lamp_rag/zero_shot_no_profile/" "predictions.json scores.json config.json run.log"
row "$OUT/lamp_rag/zero_shot_bm25_top3/" "the same, top-3 profile items in the prompt"
if [ "$LOGIT_ADJUST" = 1 ]; then
  row "$OUT/logit_adjust/" "baseline_seed_0/ beta_${LA_BETA}_seed_0/ (run folders) results.json (paired bootstrap) results.md"
fi
if [ "$LEADERBOARD" = 1 ]; then
  row "$OUT/leaderboard/" "leaderboard.md .csv LaMP_4.png (below), ledger.json, logs/, LaMP_4/ (run folders)"
fi

# ----------------------------------------------------------------------------- 4. a short leaderboard
if [ "$LEADERBOARD" = 1 ]; then
  echo
  echo "== leaderboard: first $LB_USERS LaMP_4 dev users, no profile vs RAG BM25 and logit adjustment (--quick)"
  python -m leaderboard --task LaMP_4 --data sample --num_users "$LB_USERS" --model "$MODEL" --quick \
    --methods "RAG BM25" "logit adjust" --out "$OUT/leaderboard"
fi
echo "Rerunning reuses finished generations. demo: done in $((SECONDS - started)) s (set-up included)"
