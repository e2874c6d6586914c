"""step1.sh and step2.sh: environment variables in, everything under $OUT_ROOT out (tiny models, hand-made data)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from test_curp_codebook import write_lamp4

from data.cli import REPO_ROOT


def test_step_scripts_run_end_to_end_under_out_root(tmp_path, tiny_encoder, tiny_causal_lm):
    data = tmp_path / "data"
    data.mkdir()
    questions, outputs = write_lamp4(data)
    out_root = tmp_path / "out"
    env = {**os.environ, "OUT_ROOT": str(out_root), "TASK": "LaMP_4", "TRAIN_DATA": str(questions),
           "TRAIN_OUTPUTS": str(outputs), "EVAL_DATA": str(questions), "EVAL_OUTPUTS": str(outputs),
           "ENCODER": str(tiny_encoder), "CODEBOOK_SIZE": "8", "NUM_EPOCHS": "1", "EVAL_ITEMS": "4",
           "MODEL": str(tiny_causal_lm), "HIS_LEN": "4", "HIDDEN_DIM": "8", "DEVICE": "cpu",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    for script in ("step1.sh", "step2.sh"):
        done = subprocess.run(["bash", str(REPO_ROOT / script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (out_root / "embeddings" / "train.safetensors").is_file()
    assert json.loads((out_root / "stage1" / "usage.json").read_text())["codebook_size"] == 8
    assert (out_root / "stage1" / "usage.png").is_file()
    assert (out_root / "stage2" / "projector.pt").is_file()
    # training.json of each stage: the codebooks (stage 1) and the projector (stage 2), the LLM frozen
    codebook = torch.load(out_root / "stage1" / "codebook.pt", weights_only=False)["codebooks"]
    projector = torch.load(out_root / "stage2" / "projector.pt", weights_only=False)["projector"]
    for stage, trained in (("stage1", codebook.numel()), ("stage2", sum(t.numel() for t in projector.values()))):
        assert json.loads((out_root / stage / "training.json").read_text()) == {"trainable_parameters": trained}
    scores = json.loads((out_root / "inference" / "scores.json").read_text())
    assert scores["task"] == "LaMP_4" and scores["num_examples"] == 6
    prompts = (out_root / "inference" / "prompts.jsonl").read_text().splitlines()
    assert all(json.loads(line)["text"].count("<USR_EMB>") == 4 for line in prompts)
