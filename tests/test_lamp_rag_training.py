"""lamp_rag fine-tuning: weights change and loss falls, best-checkpoint direction, LoRA, resume, train_llm CLI."""
import json
from pathlib import Path

import pytest
import torch

import eval.scoring
from data.cli import run
from data.errors import InputError
from data.loaders import load_examples, read_golds
from data.tasks import get_task
from eval.scoring import metric_values
from lamp_rag import train_llm, training
from lamp_rag.pipeline import build_prompts, resolve_prompt_style

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
# Big steps so a few updates visibly lower the loss of a random tiny model; short generation for speed.
FAST = dict(learning_rate=3e-3, warmup_ratio=0.0, per_device_batch_size=8, logging_steps=1,
            generation_max_length=8, generation_num_beams=1, save_total_limit=None)


def load(path):
    from lm import load_model

    return load_model(str(path), device="cpu")


def split(task: str, name: str, limit: int, handle):
    spec = get_task(task)
    examples = load_examples(SAMPLE / task / f"{name}_questions.json", SAMPLE / task / f"{name}_outputs.json",
                             limit=limit)
    style = resolve_prompt_style("auto", handle)
    items = [example.profile[:1] for example in examples]
    return examples, build_prompts(spec, examples, items, style, handle.tokenizer)


def finetune(task, model_path, output_dir, epochs=2, train_size=16, lora=False, **options):
    handle = load(model_path)
    train, train_prompts = split(task, "train", train_size, handle)
    val, val_prompts = split(task, "dev", 4, handle)
    return training.finetune(get_task(task), handle, train, train_prompts, val, val_prompts, output_dir,
                             epochs=epochs, lora=lora, **{**FAST, **options})


def train_losses(checkpoint: str) -> list[float]:
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def last_checkpoint(output_dir: Path) -> Path:
    return max((output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


@pytest.mark.parametrize("model", ["tiny_causal_lm", "tiny_seq2seq_lm"])
def test_full_finetuning_changes_weights_and_lowers_the_loss(model, request, tmp_path):
    path = request.getfixturevalue(model)
    before = {name: p.detach().clone() for name, p in load(path).model.named_parameters()}
    result = finetune("LaMP_4", path, tmp_path, epochs=3)

    after = dict(result.handle.model.named_parameters())
    assert all(not torch.equal(before[name], after[name]) for name in before if "norm" not in name)
    losses = train_losses(last_checkpoint(tmp_path))
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert set(result.metrics) >= {"rouge-1", "rouge-L"}
    assert Path(result.best_checkpoint).parent == tmp_path / "checkpoints"
    assert (tmp_path / "best_model" / "config.json").is_file()
    # Each epoch's validation outputs sit in its checkpoint; the best epoch's are copied to validation/.
    best_predictions = (Path(result.best_checkpoint) / "predictions.json").read_text()
    assert (tmp_path / "validation" / "predictions.json").read_text() == best_predictions
    assert metric_values(json.loads((tmp_path / "validation" / "scores.json").read_text())) == result.metrics


@pytest.mark.parametrize("task,best_epoch", [("LaMP_3", 2), ("LaMP_4", 3)])
def test_best_checkpoint_follows_the_metric_direction(task, best_epoch, tiny_causal_lm, tmp_path, monkeypatch):
    """Epoch scores 0.5, 0.1, 0.9: MAE (lower is better) keeps epoch 2, ROUGE-1 keeps epoch 3."""
    spec = get_task(task)
    best_value = {2: 0.1, 3: 0.9}[best_epoch]
    epoch_scores = iter([0.5, 0.1, 0.9, best_value])    # the 4th call scores the best checkpoint again

    def scripted(task_name, golds, predictions, **kwargs):
        value = next(epoch_scores)
        return {**{name: value for name in spec.metrics}, "task": task_name, "num_examples": len(golds)}

    monkeypatch.setattr(eval.scoring, "score_predictions", scripted)
    result = finetune(task, tiny_causal_lm, tmp_path, epochs=3, train_size=8)   # one step per epoch
    assert Path(result.best_checkpoint).name == f"checkpoint-{best_epoch}"
    state = json.loads((Path(result.best_checkpoint) / "trainer_state.json").read_text())
    assert state["best_metric"] == best_value and result.metrics[spec.best_metric] == best_value


def test_lora_changes_only_the_adapted_modules(tiny_causal_lm, tmp_path):
    base = dict(load(tiny_causal_lm).model.named_parameters())
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, lora=True, lora_r=4)

    checkpoint = Path(result.best_checkpoint)
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()       # only the adapter is trained and saved
    merged = dict(result.handle.model.named_parameters())
    assert merged.keys() == base.keys()                           # adapters merged into plain weights
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    assert changed and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed)


def test_lora_targets_follow_the_model_type(tiny_causal_lm, tiny_seq2seq_lm):
    assert training.lora_target_modules(load(tiny_causal_lm).model) == ["q_proj", "v_proj"]
    assert training.lora_target_modules(load(tiny_seq2seq_lm).model) == ["q", "v"]


def test_rerun_resumes_from_the_last_checkpoint(tiny_causal_lm, tmp_path, caplog):
    finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, train_size=8)
    caplog.set_level("INFO", logger="lampkit.lamp_rag")
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=2, train_size=8)
    assert f"resuming from {tmp_path / 'checkpoints' / 'checkpoint-1'}" in caplog.text
    assert last_checkpoint(tmp_path).name == "checkpoint-2" and len(train_losses(result.best_checkpoint)) >= 1


def checkpoint_files(output_dir: Path) -> dict[str, bytes]:
    folder = output_dir / "checkpoints"
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("change,named", [({"learning_rate": 1e-6}, "learning_rate was 0.003, now 1e-06"),
                                          ({"seed": 7}, "seed was 0, now 7"),
                                          ({"train_size": 4}, "training data differs"),
                                          ({"lora": True}, "lora was False, now True")],
                         ids=["learning_rate", "seed", "limit", "lora"])
def test_rerun_with_other_settings_is_refused_and_keeps_the_old_checkpoints(tiny_causal_lm, tmp_path, change,
                                                                            named):
    finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, train_size=8)
    before = checkpoint_files(tmp_path)
    assert "run_settings.json" in before
    with pytest.raises(InputError) as error:
        finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, **{"train_size": 8, **change})
    message = str(error.value)
    assert message.startswith(str(tmp_path / "checkpoints")) and named in message and "\n" not in message
    assert "--output_dir" in message and "delete" in message
    assert checkpoint_files(tmp_path) == before


def test_checkpoints_without_run_settings_are_not_resumed(tiny_causal_lm, tmp_path):
    finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, train_size=8)
    (tmp_path / "checkpoints" / "run_settings.json").unlink()       # a run of an older lampkit
    with pytest.raises(InputError, match="run_settings.json"):
        finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=2, train_size=8)


def test_train_llm_rerun_with_another_learning_rate_exits_2(tiny_causal_lm, tmp_path, capsys):
    argv = cli_args(tmp_path, tiny_causal_lm) + ["--num_train_epochs", "1", "--generation_max_length", "4",
                                                  "--generation_num_beams", "1", "--limit", "4"]
    assert run(train_llm.main, argv) == 0
    capsys.readouterr()
    assert run(train_llm.main, argv + ["--learning_rate", "1e-3"]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]      # after the model loading progress bars
    assert last_line.startswith("error: ") and "checkpoints: " in last_line and "learning_rate" in last_line


def cli_args(tmp_path, model, task="LaMP_4"):
    data = SAMPLE / task
    return ["--task", task, "--model_name", str(model), "--output_dir", str(tmp_path / "run"),
            "--train_data", str(data / "train_questions.json"), "--train_outputs", str(data / "train_outputs.json"),
            "--validation_data", str(data / "dev_questions.json"),
            "--validation_outputs", str(data / "dev_outputs.json"), "--limit", "8"]


def test_train_llm_saves_validation_and_test_predictions(tiny_seq2seq_lm, tmp_path, capsys):
    data = SAMPLE / "LaMP_3"
    argv = cli_args(tmp_path, tiny_seq2seq_lm, "LaMP_3") + [
        "--test_data", str(data / "dev_questions.json"), "--test_outputs", str(data / "dev_outputs.json"),
        "--use_profile", "--retriever", "recency",
        "--num_train_epochs", "1", "--generation_max_length", "4", "--generation_num_beams", "2",
        "--per_device_batch_size", "4"]
    assert run(train_llm.main, argv) == 0
    out = tmp_path / "run"
    for name in ("validation", "test"):
        task, predictions = read_golds(out / name / "predictions.json")
        assert task == "LaMP_3" and len(predictions) == 8
        assert set(metric_values(json.loads((out / name / "scores.json").read_text()))) == {"MAE", "RMSE"}
    config = json.loads((out / "config.json").read_text())
    assert config["prompt_style"] == "official" and config["args"]["learning_rate"] == 5e-5
    printed = capsys.readouterr().out
    assert "best checkpoint: " in printed and str(out / "test" / "predictions.json") in printed


@pytest.mark.parametrize("flag,value", [("--train_outputs", None), ("--task", "LaMP_44"),
                                        ("--validation_data", "missing.json")],
                         ids=["no_train_golds", "unknown_task", "missing_file"])
def test_train_llm_bad_input_is_one_line_exit_2_and_no_output(tiny_causal_lm, tmp_path, capsys, flag, value):
    argv = cli_args(tmp_path, tiny_causal_lm)
    position = argv.index(flag)
    if value is None:
        del argv[position:position + 2]
    else:
        argv[position + 1] = str(tmp_path / value) if value.endswith(".json") else value
    assert run(train_llm.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()



@pytest.mark.parametrize("model", ["tiny_causal_lm", "tiny_seq2seq_lm"])
def test_official_training_prompts_are_cut_to_max_length_from_the_right(model, request):
    from lm.prompting import encode_prompts

    handle = load(request.getfixturevalue(model))
    examples = load_examples(SAMPLE / "LaMP_4" / "train_questions.json", SAMPLE / "LaMP_4" / "train_outputs.json",
                             limit=4)
    prompts = build_prompts(get_task("LaMP_4"), examples, [e.profile[:2] for e in examples], "official",
                            handle.tokenizer, max_length=64)
    targets = [e.target for e in examples]
    full = encode_prompts(handle, prompts, None, None)       # as _tokenize encodes (chat template if any)
    assert all(len(ids) > 40 for ids in full)
    cut = training._tokenize(handle, prompts, targets, 8, max_prompt_tokens=40)
    uncut = training._tokenize(handle, prompts, targets, 8)          # no max_length cut (chat style)
    for row, whole, ids in zip(cut, uncut, full):
        prompt_ids = row["input_ids"] if handle.is_encoder_decoder else \
            [t for t, label in zip(row["input_ids"], row["labels"]) if label == -100]
        assert 0 < len(prompt_ids) <= 40 and len(whole["input_ids"]) > len(row["input_ids"])
        if handle.is_encoder_decoder:     # the start survives and T5's </s> stays last, as with truncation=True
            assert prompt_ids[:39] == ids[:39] and prompt_ids[-1] == handle.tokenizer.eos_token_id
        else:                             # the chat turn keeps its start and its generation prompt
            assert prompt_ids[:8] == ids[:8] and prompt_ids[-5:] == ids[-5:]
        # the target tokens follow unchanged
        assert [t for t in row["labels"] if t != -100] == [t for t in whole["labels"] if t != -100]
