"""curp/ — CURP: product-quantized user codebook and projector at `<USR_EMB>` tokens (not built yet) — see README.md."""
