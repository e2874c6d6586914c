"""curp/ — CURP: product-quantized user codebook and projector at `<USR_EMB>` tokens — see README.md."""
