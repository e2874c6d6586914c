"""Training scripts under torchrun --nproc_per_node 2 (gloo, CPU, tiny random models): both ranks finish, the
group trains one model (half the steps of one process), rank 0 alone writes, and what it saves has exactly
the single-process format. Plus the shared layer itself (runtime.distributed) in one process."""
import json

import pytest

from launch import run_module, saved_format


def write(path, value):
    path.write_text(json.dumps(value))
    return path


def lamp4_split(tmp_path, name: str, count: int):
    """A LaMP_4 questions file and its outputs file (the benchmark's two-file layout), written by hand."""
    questions = [{"id": f"{name}{n}", "input": f"Generate a headline for the following article: The cat saw "
                                                 f"the dog number {n} in the garden.",
                  "profile": [{"id": f"{name}{n}-0", "title": "A dog", "text": "The dog ran home."}]}
                 for n in range(count)]
    outputs = {"task": "LaMP_4", "golds": [{"id": f"{name}{n}", "output": f"Cat sees dog {n}"} for n in range(count)]}
    return write(tmp_path / f"{name}_questions.json", questions), write(tmp_path / f"{name}_outputs.json", outputs)


def train_llm(tiny_causal_lm, tmp_path, out, processes):
    train, train_outputs = lamp4_split(tmp_path, "train", 8)
    dev, dev_outputs = lamp4_split(tmp_path, "dev", 2)
    return run_module("lamp_rag.train_llm", [
        "--task", "LaMP_4", "--model_name", tiny_causal_lm, "--device", "cpu", "--train_data", train,
        "--train_outputs", train_outputs, "--validation_data", dev, "--validation_outputs", dev_outputs,
        "--output_dir", out, "--num_train_epochs", "1", "--per_device_batch_size", "2", "--learning_rate", "1e-3",
        "--generation_max_length", "4", "--generation_num_beams", "1"], processes)


def test_train_llm_under_torchrun_writes_one_checkpoint_of_the_single_process_format(tiny_causal_lm, tmp_path):
    alone = train_llm(tiny_causal_lm, tmp_path, tmp_path / "one", 1)
    together = train_llm(tiny_causal_lm, tmp_path, tmp_path / "two", 2)

    # 8 examples, 2 per device and step: one process takes 4 steps, two processes (DDP) take 2.
    assert [p.name for p in (tmp_path / "one" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-4"]
    assert [p.name for p in (tmp_path / "two" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    for folder in ("checkpoints/checkpoint-4", "best_model"):
        expected = saved_format(tmp_path / "one" / folder)
        assert saved_format(tmp_path / "two" / folder.replace("-4", "-2")) == expected
        assert not any(key.startswith("module.") for file in expected["tensors"].values() for key in file)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints" / "checkpoint-2").glob("rng_state*")) == \
        ["rng_state_0.pth", "rng_state_1.pth"]                   # Trainer's resume RNG state of each process

    for result in (alone, together):                              # rank 0 alone prints and writes
        assert result.stdout.count("best checkpoint: ") == 1
        assert result.stdout.count("LaMP_4 validation rouge-1") == 1
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    assert "2 processes (gloo backend)" in (tmp_path / "two" / "run.log").read_text()
    assert (tmp_path / "two" / "validation" / "scores.json").is_file()


def user_record(name: str) -> dict:
    return {"user_id": name, "profile": [{"id": f"{name}-{i}", "title": f"{name} title {i}",
                                          "text": f"{name} wrote about the garden {i}."} for i in range(2)],
            "query": [{"id": f"q-{name}", "input": f"Generate a headline for the following article: {name} news.",
                       "gold": f"{name} headline"}]}


def oppu_folder(tmp_path, targets=("alice",)):
    """A CoPe/OPPU folder, written by hand: target users and four non-target users (the TAM's training data)."""
    folder = tmp_path / "oppu"
    folder.mkdir()
    write(folder / "user_top_100_history.json", [user_record(name) for name in targets])
    write(folder / "user_others.json", [user_record(name) for name in ("dan", "erin", "fay", "gus")])
    write(folder / "user_top_100_history_label.json",
          {"task": "LaMP_4", "golds": [{"id": f"q-{name}", "output": f"{name} headline"} for name in targets]})
    return folder


def test_cope_tam_under_torchrun_saves_one_adapter_of_the_single_process_format(tiny_causal_lm, tmp_path):
    data = oppu_folder(tmp_path)
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"run{processes}"
        outputs[processes] = run_module("cope.tam", [
            "--task_name", "news_headline", "--data_path", data, "--model_name", tiny_causal_lm, "--device", "cpu",
            "--output_dir", out, "--max_epoch", "1", "--batch_size", "1", "--is_train"], processes)
    one, two = tmp_path / "run1" / "TAM", tmp_path / "run2" / "TAM"
    assert saved_format(two / "adapter") == saved_format(one / "adapter")
    assert "adapter_model.safetensors" in saved_format(one / "adapter")["files"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert outputs[2].stdout.count("TAM adapter (4 non-target queries)") == 1    # rank 0 alone
    assert json.loads((two / "train_config.json").read_text())["world_size"] == 2
    assert "2 processes (gloo backend)" in (two / "run.log").read_text()


def test_per_user_training_under_torchrun_shards_users_and_trains_each_alone(tiny_causal_lm, tmp_path):
    """cope.oppu_sft under torchrun: each rank trains its own users with no process group (DDP would average
    different users' gradients), so every adapter equals the one a single process trains."""
    import shutil

    import torch
    from safetensors.torch import load_file

    data = oppu_folder(tmp_path, targets=("alice", "bob", "carol"))
    common = ["--task_name", "news_headline", "--data_path", data, "--model_name", tiny_causal_lm, "--device", "cpu",
              "--max_epoch", "1", "--batch_size", "1"]
    run_module("cope.tam", [*common, "--output_dir", tmp_path / "one", "--is_train"])
    shutil.copytree(tmp_path / "one" / "TAM", tmp_path / "two" / "TAM")        # the same TAM under both runs
    run_module("cope.oppu_sft", [*common, "--output_dir", tmp_path / "one", "--is_train"])
    sharded = run_module("cope.oppu_sft", [*common, "--output_dir", tmp_path / "two", "--is_train"], processes=2)

    stage = "adapters/OPPU_SFT/users/{}/adapter/adapter_model.safetensors"
    for name in ("alice", "bob", "carol"):
        alone, together = (load_file(tmp_path / copy / stage.format(name)) for copy in ("one", "two"))
        assert alone.keys() == together.keys()
        assert all(torch.allclose(alone[key], together[key], atol=1e-6) for key in alone), name
    log = (tmp_path / "two" / "adapters" / "OPPU_SFT" / "run.log").read_text()
    assert "shard 0 of 2: 2 users" in log and "shard 1 of 2" not in log      # rank 0 alone logs at INFO
    config = json.loads((tmp_path / "two" / "adapters" / "OPPU_SFT" / "config.json").read_text())["args"]
    assert (config["num_shards"], config["shard_id"]) == (2, 0)              # written by rank 0, shard fixed
    assert sharded.stdout.count("OPPU adapters: ") == 2                      # each rank ran its own loop


# ----------------------------------------------------------------------------- the layer in one process

def test_one_process_is_the_main_process_and_wraps_nothing(monkeypatch):
    import torch

    from runtime.distributed import processes

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    from accelerate import PartialState

    place = processes("cpu")
    model = torch.nn.Linear(2, 2)
    assert (place.rank, place.world_size, place.is_main_process) == (0, 1, True)
    assert place.wrap(model) is model and place.broadcast({"a": 1}) == {"a": 1}
    processes.cache_clear()
    PartialState._reset_state()        # later tests choose their own device


def test_independent_workers_fix_the_shard_and_leave_the_group(monkeypatch):
    import argparse

    import runtime.distributed as distributed

    monkeypatch.setattr(distributed, "_worker_rank", None)
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args = argparse.Namespace(num_shards=None, shard_id=None)
    distributed.independent_workers(args)
    assert (args.num_shards, args.shard_id) == (2, 1)
    assert not {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"} & set(__import__("os").environ)
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "1"      # this rank's GPU only
    assert not distributed.is_main_process()                            # rank 1 still does not write the config


def test_saved_state_resumes_only_under_the_same_key(tmp_path):
    import torch

    from runtime.distributed import load_state, save_state

    save_state(tmp_path / "state.pt", {"key": "a", "step": 3, "weights": torch.ones(2)})
    assert load_state(tmp_path / "state.pt", "a")["step"] == 3
    assert load_state(tmp_path / "state.pt", "b") is None
    assert load_state(tmp_path / "missing.pt", "a") is None
