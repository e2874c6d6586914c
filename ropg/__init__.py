"""ropg/ — Retrieval Optimization for Personalized Generation (not built yet) — see README.md."""
