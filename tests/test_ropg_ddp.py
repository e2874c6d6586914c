"""ropg.train_kd under torchrun: 2 CPU processes (gloo DDP) train a tiny encoder and rank 0 alone writes."""
import json

import torch

from launch import run_module, saved_format


def test_torchrun_two_processes_write_one_checkpoint_from_rank_0(tiny_encoder, tmp_path):
    questions = [{"id": f"q{n}", "input": f"Generate a headline for the following article: story {n} about rivers",
                  "profile": [{"id": f"q{n}-{i}", "title": f"t{i}", "text": f"text {i} of story {n}",
                               "date": "2020-01-0{}".format(i + 1)} for i in range(3)]} for n in range(4)]
    outputs = {"task": "LaMP_4", "golds": [{"id": f"q{n}", "output": f"headline {n}"} for n in range(4)]}
    scores = {f"q{n}-q{n}-{i}": {"rouge-1": i / 4, "rank": i} for n in range(4) for i in range(3)}
    for name, content in (("q.json", questions), ("o.json", outputs), ("s.json", scores)):
        (tmp_path / name).write_text(json.dumps(content))
    result = run_module("ropg.train_kd", [
        "--do_train", "--task", "LaMP_4", "--train_data", tmp_path / "q.json", "--train_outputs", tmp_path / "o.json",
        "--scores_path", tmp_path / "s.json", "--name", "kd", "--ctx_size", "3", "--total_steps", "3",
        "--model_path", tiny_encoder, "--device", "cpu", "--checkpoint_dir", tmp_path / "ckpt", "--lr", "1e-3"],
        processes=2)
    checkpoints = tmp_path / "ckpt" / "kd" / "checkpoint"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["latest", "step-3"]
    assert result.stdout.count("checkpoint: ") == 1               # only rank 0 prints and writes
    assert "2 process(es)" in (tmp_path / "ckpt" / "kd" / "run.log").read_text()
    weights = saved_format(checkpoints / "latest")["tensors"]["model.safetensors"]
    assert weights and not any(key.startswith("module.") for key in weights)     # the unwrapped encoder
    assert torch.load(checkpoints / "latest" / "optimizer.pth.tar", weights_only=False)["step"] == 3
    assert (checkpoints / "latest" / "model.safetensors").is_file()
