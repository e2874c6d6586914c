"""cope/ — CoPe (spec curp_cope_oppu 3): task-adapted model, per-user LoRA (OPPU), pseudo-negatives, per-user
DPO and contrastive decoding, on one base model in memory. Library: ``cope.data`` (OPPU folder, the one
prompt form), ``cope.pipeline`` (models, per-user training and decoding), ``cope.negatives`` (sampling,
scoring, selection). Entry points: ``python -m cope.<tam|oppu_sft|generate_pseudo_negatives|compute_scores|
oppu_sft_dpo> --help``; ``scripts/cope.sh`` runs them all. See README.md."""
