"""logit_adjust with the packaged SmolLM2-135M-Instruct and all-MiniLM-L6-v2 on the embedded sample."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.realmodel


def test_positive_beta_steers_generations_toward_the_profile(tmp_path):
    # unigram boosts the user's own tokens; the repetition penalty keeps a strong bias from collapsing into
    # one repeated word, so the rise in the share comes from varied profile words.
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "logit_adjust.main", "--task", "LongLaMP_2", "--num_users", "6", "--beta", "0", "3",
         "--token_map", "unigram", "--repetition_penalty", "1.3", "--max_new_tokens", "32",
         "--bootstrap_samples", "500", "--output_dir", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    share = results["difference"]["3"]["profile_word_share"]
    assert share["difference"] > 0.05 and share["low"] > 0, share
    baseline, steered = (json.loads((out / f"{name}_seed_0" / "predictions.json").read_text())["golds"]
                         for name in ("baseline", "beta_3"))
    assert sum(a["output"] != b["output"] for a, b in zip(baseline, steered)) >= 5


def test_sbert_vocab_boosts_topical_tokens_and_beta_zero_is_the_baseline(default_lm, default_encoder):
    from data.loaders import load_examples
    from data.tasks import get_task
    from logit_adjust.experiment import sample_paths
    from logit_adjust.processor import UserBiasFactory
    from logit_adjust.token_maps import special_token_ids, top_tokens, user_biases
    from logit_adjust.user_vectors import user_profile

    spec = get_task("LongLaMP_2")
    examples = load_examples(*sample_paths(spec), task=spec.name, limit=4)
    profiles = [user_profile(spec, e) for e in examples]
    biases = user_biases("sbert_vocab", default_lm.tokenizer, profiles, encoder=default_encoder)
    assert biases.shape == (4, len(default_lm.tokenizer))
    assert all(biases[:, i].abs().max() == 0 for i in special_token_ids(default_lm.tokenizer, default_lm.model))
    # The recipe-writing user of the sample gets cooking words on top.
    top = " ".join(text for text, _ in top_tokens(biases[1], default_lm.tokenizer, 10)).lower()
    assert "recipe" in top or "bak" in top, top

    prompts = [e.input for e in examples]
    zero_ids = special_token_ids(default_lm.tokenizer, default_lm.model)
    options = dict(max_new_tokens=16, batch_size=2, progress=False)
    baseline = default_lm.generate(prompts, **options)
    assert default_lm.generate(prompts, logits_processor=UserBiasFactory(biases, range(4), 0.0, zero_ids),
                               **options) == baseline
    steered = default_lm.generate(prompts, logits_processor=UserBiasFactory(biases, range(4), 2.0, zero_ids),
                                  **options)
    assert steered != baseline


def test_demo_notebook_runs_top_to_bottom():
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.read(REPO_ROOT / "logit_adjust" / "demo_notebook.ipynb", as_version=4)
    ExecutePreprocessor(timeout=1800, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(REPO_ROOT / "logit_adjust")}})
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "profile-word share" in outputs and "sbert_vocab" in outputs


def test_demo_script_runs():
    done = subprocess.run([sys.executable, "-m", "logit_adjust.demo", "--max_new_tokens", "16"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== 3. one question" in done.stdout and "beta 1 (profile-word share" in done.stdout
