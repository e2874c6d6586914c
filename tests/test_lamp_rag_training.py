"""lamp_rag fine-tuning: weights change and loss falls, best-checkpoint direction, LoRA adapters (per user,
never stacked, merged only when asked), no validation, the given handle untouched, resume, train_llm CLI."""
import json
from pathlib import Path

import pytest
import torch

import eval.scoring
from data.cli import run
from data.errors import InputError
from data.io import read_json as load_json
from data.loaders import load_examples, read_golds
from data.tasks import get_task
from eval.scoring import metric_values
from lamp_rag import train_llm, training
from lamp_rag.pipeline import build_prompts, resolve_prompt_style
from lm.adapters import lora_target_modules
from lm.train import sft_rows

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


def finetune(task, model_path, output_dir, epochs=2, train_size=16, lora=False, validate=True, handle=None,
             **options):
    handle = handle or load(model_path)
    train, train_prompts = split(task, "train", train_size, handle)
    val, val_prompts = split(task, "dev", 4, handle) if validate else (None, None)
    return training.finetune(get_task(task), handle, train, train_prompts, val, val_prompts, output_dir,
                             epochs=epochs, lora=lora, **{**FAST, **options})


def dev_scores(handle, task="LaMP_4"):
    examples, prompts = split(task, "dev", 4, handle)
    return [score.sum_logprob for score in handle.score(prompts, [e.target for e in examples], progress=False)]


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


def test_lora_trains_a_named_adapter_and_saves_it_alone(tiny_causal_lm, tmp_path):
    handle = load(tiny_causal_lm)
    base_weights = {name: p.detach().clone() for name, p in handle.model.named_parameters()}
    base = dev_scores(handle)
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, lora=True, lora_r=4, handle=handle)

    checkpoint = Path(result.best_checkpoint)
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "predictions.json").is_file()
    assert not (checkpoint / "model.safetensors").exists()       # only the adapter is trained and saved
    best_model = tmp_path / "best_model"
    assert (best_model / "adapter_config.json").is_file() and not (best_model / "model.safetensors").exists()
    # the base weights did not move; only the adapter's LoRA matrices did
    assert result.adapter == "finetune" and result.handle.adapter == "finetune"
    weights = {name.replace(".base_layer", ""): p for name, p in handle.model.get_base_model().named_parameters()
               if "lora_" not in name}
    assert weights.keys() == base_weights.keys()
    assert all(torch.equal(base_weights[name], weights[name]) for name in base_weights)
    # the handle given keeps its outputs; the result's handle uses the adapter, as does the saved folder
    assert handle.adapter is None and dev_scores(handle) == pytest.approx(base, abs=1e-5)
    tuned = dev_scores(result.handle)
    assert tuned != pytest.approx(base, abs=1e-3)
    assert dev_scores(load(best_model)) == pytest.approx(tuned, abs=1e-4)


def test_lora_per_user_adapters_on_one_handle_do_not_stack(tiny_causal_lm, tmp_path):
    handle = load(tiny_causal_lm)
    first = finetune("LaMP_4", tiny_causal_lm, tmp_path / "a", lora=True, validate=False, handle=handle,
                     adapter_name="user_a", train_size=8)
    first_scores = dev_scores(first.handle)
    before = {name: p.detach().clone() for name, p in handle.model.named_parameters()}
    second = finetune("LaMP_4", tiny_causal_lm, tmp_path / "b", lora=True, validate=False, handle=handle,
                      adapter_name="user_b", train_size=8, seed=1)
    assert handle.adapters == ["user_a", "user_b"]
    after = dict(handle.model.named_parameters())
    assert all(torch.equal(after[name], before[name]) for name in before)   # user_a and the base untouched
    # training.json counts user_b's LoRA matrices alone (the leaderboard's trainable parameters)
    user_b = sum(p.numel() for name, p in after.items() if ".user_b." in name)
    assert user_b > 0 and load_json(tmp_path / "b" / "training.json") == {"trainable_parameters": user_b}
    assert any(".user_b." in name and "lora_B" in name and p.abs().sum() > 0 for name, p in after.items())
    assert dev_scores(first.handle) == pytest.approx(first_scores, abs=1e-5)
    # user_b was trained from a fresh adapter: retraining it alone on a new handle gives the same weights
    alone = finetune("LaMP_4", tiny_causal_lm, tmp_path / "c", lora=True, validate=False,
                     adapter_name="user_b", train_size=8, seed=1)
    assert dev_scores(alone.handle) == pytest.approx(dev_scores(second.handle), abs=1e-4)


def test_lora_merged_only_when_asked(tiny_seq2seq_lm, tmp_path):
    result = finetune("LaMP_4", tiny_seq2seq_lm, tmp_path, epochs=1, lora=True, validate=False, merge_lora=True)
    best_model = tmp_path / "best_model"
    assert (best_model / "model.safetensors").is_file() and not (best_model / "adapter_config.json").exists()
    # merging rounds differently; the tiny T5's log-probs are in the thousands
    assert dev_scores(load(best_model)) == pytest.approx(dev_scores(result.handle), rel=2e-4)
    assert result.handle.adapters == ["finetune"]           # merging a copy left the adapter in place


def test_without_validation_nothing_is_generated_and_the_last_epoch_is_kept(tiny_causal_lm, tmp_path, monkeypatch):
    import lm.generation

    def no_generation(*args, **kwargs):
        raise AssertionError("generated during training without a validation set")

    monkeypatch.setattr(lm.generation, "generate_ids", no_generation)
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=2, train_size=8, validate=False)
    assert Path(result.best_checkpoint) == tmp_path / "checkpoints" / "checkpoint-2" and result.metrics == {}
    assert not any((tmp_path / "checkpoints").rglob("predictions.json"))
    assert not (tmp_path / "validation").exists() and (tmp_path / "best_model" / "model.safetensors").is_file()


def test_full_finetuning_leaves_the_given_handle_alone(tiny_causal_lm, tmp_path):
    handle = load(tiny_causal_lm)
    base = dev_scores(handle)
    model = handle.model
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, train_size=8, validate=False, handle=handle)
    assert handle.model is model and dev_scores(handle) == pytest.approx(base, abs=1e-6)
    every_weight = sum(p.numel() for p in model.parameters())
    assert load_json(tmp_path / "training.json")["trainable_parameters"] == every_weight
    assert result.handle.model is not model and dev_scores(result.handle) != pytest.approx(base, abs=1e-3)


def test_lora_targets_follow_the_model_type(tiny_causal_lm, tiny_seq2seq_lm):
    assert lora_target_modules(load(tiny_causal_lm).model) == ["q_proj", "v_proj"]
    assert lora_target_modules(load(tiny_seq2seq_lm).model) == ["q", "v"]


def test_rerun_resumes_from_the_last_checkpoint(tiny_causal_lm, tmp_path, caplog):
    finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=1, train_size=8)
    caplog.set_level("INFO", logger="lampkit.lamp_rag")
    result = finetune("LaMP_4", tiny_causal_lm, tmp_path, epochs=2, train_size=8)
    assert f"resuming from {tmp_path / 'checkpoints' / 'checkpoint-1'}" in caplog.text
    assert last_checkpoint(tmp_path).name == "checkpoint-2" and len(train_losses(result.best_checkpoint)) >= 1


def test_an_interrupted_lora_run_resumes_to_the_same_adapter(tiny_causal_lm, tmp_path):
    import shutil

    whole = finetune("LaMP_4", tiny_causal_lm, tmp_path / "whole", epochs=2, train_size=8, lora=True, validate=False)
    finetune("LaMP_4", tiny_causal_lm, tmp_path / "cut", epochs=2, train_size=8, lora=True, validate=False)
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "checkpoint-2")      # as if stopped after epoch 1
    resumed = finetune("LaMP_4", tiny_causal_lm, tmp_path / "cut", epochs=2, train_size=8, lora=True,
                       validate=False)
    assert dev_scores(resumed.handle) == pytest.approx(dev_scores(whole.handle), abs=1e-4)
    fresh_start = load(tiny_causal_lm)                # a resume that ignored checkpoint-1 would land elsewhere
    assert dev_scores(resumed.handle) != pytest.approx(dev_scores(fresh_start), abs=1e-3)


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


def test_train_llm_lora_without_validation_saves_the_adapter(tiny_causal_lm, tmp_path, capsys):
    argv = cli_args(tmp_path, tiny_causal_lm)
    position = argv.index("--validation_data")
    del argv[position:position + 4]                      # --validation_data and --validation_outputs
    assert run(train_llm.main, argv + ["--lora", "--num_train_epochs", "1", "--lora_r", "4"]) == 0
    out = tmp_path / "run"
    assert (out / "best_model" / "adapter_config.json").is_file() and not (out / "validation").exists()
    printed = capsys.readouterr().out
    assert "best model: " in printed and "validation: " not in printed
    assert load(out / "best_model").adapter == "loaded"


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
    full = encode_prompts(handle, prompts, None, None)       # as sft_rows encodes (chat template if any)
    assert all(len(ids) > 40 for ids in full)
    cut = sft_rows(handle, prompts, targets, 8, max_prompt_tokens=40)
    uncut = sft_rows(handle, prompts, targets, 8)          # no max_length cut (chat style)
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
