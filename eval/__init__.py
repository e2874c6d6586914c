"""lampkit's one evaluator: the metric registry (``eval.metrics``), file scoring matched by id
(``eval.scoring``), the paired bootstrap (``eval.bootstrap``) and the official-style CLIs
``python -m eval.eval_task`` / ``python -m eval.eval_all``.

Imports stay in the submodules so that ``--help`` and light users do not load the metric libraries.
"""
