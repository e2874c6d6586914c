"""User-embedding logit adjustment: personalize generation by adding ``beta * bias(token, user)`` to the
next-token logits (spec profile_study_baseline_longlamp.md section B, re-implemented with its bugs fixed).

Modules: ``user_vectors`` (profile -> unit vector, cached), ``token_maps`` (user -> z-scored vocabulary bias:
``sbert_vocab`` or ``unigram``), ``processor`` (the HF LogitsProcessor and lm's per-batch factory),
``experiment`` (baseline vs personalized runs, scoring, bootstrap, table, plot), ``main`` (CLI), ``demo``.
"""
