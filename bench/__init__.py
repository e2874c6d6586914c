"""Benchmarks of lampkit's hot paths, one script per path (``python bench/bench_x.py`` or
``python -m bench.bench_x``), each ending with one JSON line; ``bash bench/run_all.sh`` runs them all."""
