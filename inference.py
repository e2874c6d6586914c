"""CURP inference at the top level, as in CURP_code: ``python inference.py [flags]``.

Reads and writes under $OUT_ROOT (default runs/curp) unless told otherwise; the flags are those of
``python -m curp.inference --help``.
"""
from curp.inference import main
from data.cli import run

if __name__ == "__main__":
    raise SystemExit(run(main))
