"""cope/ — CoPe: task model, per-user LoRA, pseudo-negatives, per-user DPO, contrastive decoding (not built yet) — see README.md."""
