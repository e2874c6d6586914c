"""LaMP retrieval-augmented personalization (spec lamp.md 3-6) and the user-profile role study (spec A).

Library modules (generation, resuming and the result files come from the shared ``runtime``):

* ``lamp_rag.retrieval``: rankers (exact vectorized BM25, dense, recency, random) and top-k selection;
* ``lamp_rag.pipeline``: prompt style, the official prompt cut and prompts;
* ``lamp_rag.training``: fine-tuning (lm.train SFT) with optional per-epoch generation-based validation;
* ``lamp_rag.study``: the profile study's item selection, ablations and orders.

Entry points (``python -m lamp_rag.<name> --help``): ``rank_profiles``, ``merge_with_rank``,
``evaluate_llm``, ``train_llm``, ``profile_study``.
"""
