"""rspg/ — Retrieval Selection for Personalized Generation (not built yet) — see README.md."""
