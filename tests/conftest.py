"""Shared pytest fixtures: tiny random models on disk, the packaged real models, the shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never download: everything they load is built here or packaged in the venv.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before torch is imported: sleeping OpenMP workers share the 2 CPUs with other processes gracefully.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line("markers", "realmodel: uses the packaged SmolLM2/MiniLM models (slower; still run in CI)")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Byte-level BPE tokenizer with <pad>/<s>/</s> and a ChatML-like chat template (prepends <s>)."""
    from tiny_models import build_tokenizer

    return build_tokenizer("causal")


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory, tiny_tokenizer) -> Path:
    """Folder of a random LlamaForCausalLM (hidden 32, 2 layers, 4 heads) with the tiny tokenizer."""
    from tiny_models import save_causal_lm

    return save_causal_lm(tmp_path_factory.mktemp("tiny_causal_lm"), tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_seq2seq_lm(tmp_path_factory) -> Path:
    """Folder of a random T5ForConditionalGeneration (d_model 32, 2 layers); its tokenizer appends </s>."""
    from tiny_models import build_tokenizer, save_seq2seq_lm

    return save_seq2seq_lm(tmp_path_factory.mktemp("tiny_seq2seq_lm"), build_tokenizer("seq2seq"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """Folder of a random BertModel + tokenizer for dense retrieval tests."""
    from tiny_models import build_tokenizer, save_encoder

    return save_encoder(tmp_path_factory.mktemp("tiny_encoder"), build_tokenizer("seq2seq"))


@pytest.fixture(scope="session")
def default_lm():
    """The packaged SmolLM2-135M-Instruct on CPU, loaded once per session (converted on first use)."""
    from lm import load_model

    return load_model("default", device="cpu")


@pytest.fixture(scope="session")
def default_encoder():
    """The packaged all-MiniLM-L6-v2 mean-pooling encoder on CPU, loaded once per session."""
    from lm import load_encoder

    return load_encoder("default", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real LaMP/LongLaMP data next to the repository (../shared/data); skips when absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path}")
    return path


@pytest.fixture
def worker_pools(monkeypatch) -> list:
    """Records every worker-process pool that data.parallel.ordered_map starts during the test."""
    from data import parallel

    pools = []

    class RecordedPool(parallel.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", RecordedPool)
    return pools
