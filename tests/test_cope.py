"""cope: the five steps on a tiny random Llama and a hand-written OPPU folder (spec curp_cope_oppu 4.2).

Covers the contrastive score against hand-worked numbers, alpha = 0 against plain greedy decoding,
negative selection (max / min), DPO toward the chosen output with the TAM as reference, per-user data
isolation, and resuming a killed per-user run.
"""
import json
import math
from pathlib import Path

import pytest
import torch

from cope import compute_scores, generate_pseudo_negatives, oppu_sft, oppu_sft_dpo, tam
from cope.data import item_prompt, item_target, query_prompt, read_users
from cope.negatives import SELECTION_FILE, score_user, select_negative
from cope.options import DecodingSettings
from cope.pipeline import (SFT_STAGE, USER_ADAPTER, decode_user, dpo_user, lora, stage_root, user_adapter_folder,
                           DPO_STAGE, USER_LORA)
from data.cli import run
from lm import BASE, ContrastiveCombine, load_model
from lm.adapters import LoraOptions
from lm.train import TrainOptions
from runtime.generation import postprocess
from runtime.users import DONE_FILE, user_folder


def user_entry(user: str, titles: list[str], query_id: str) -> dict:
    return {"user_id": user,
            "profile": [{"id": f"{user}-{i}", "title": title, "text": f"{user} wrote about item {i} today."}
                        for i, title in enumerate(titles)],
            "query": [{"id": query_id, "input": f"Generate a headline for the following article: {user} news.",
                       "gold": f"{user} headline"}]}


TARGETS = [user_entry("alice", ["alice one", "alice two", "alice three"], "q-alice"),
           user_entry("bob", ["bob first", "bob second"], "q-bob"),
           user_entry("carol", ["carol a", "carol b"], "q-carol")]
OTHERS = [user_entry("dan", ["dan x"], "q-dan"), user_entry("erin", ["erin y"], "q-erin")]


@pytest.fixture(scope="module")
def oppu_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("oppu")
    (folder / "user_top_100_history.json").write_text(json.dumps(TARGETS))
    (folder / "user_others.json").write_text(json.dumps(OTHERS))
    golds = [{"id": q["id"], "output": q["gold"]} for user in TARGETS for q in user["query"]]
    (folder / "user_top_100_history_label.json").write_text(json.dumps({"task": "LaMP_4", "golds": golds}))
    return folder


def common(oppu_folder, model, out) -> list[str]:
    return ["--task_name", "news_headline", "--data_path", str(oppu_folder), "--model_name", str(model),
            "--output_dir", str(out)]


@pytest.fixture(scope="module")
def trained_tam(oppu_folder, tiny_causal_lm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cope_run")
    assert run(tam.main, [*common(oppu_folder, tiny_causal_lm, out), "--max_epoch", "1", "--is_train",
                          "--is_test", "--max_new_tokens", "4"]) == 0
    return out


# ----------------------------------------------------------------------------- the contrastive score

def test_contrastive_score_matches_hand_worked_numbers():
    """p_E = [.6, .3, .05, .05] -> head {0, 1} (>= .06), p~_E = [2/3, 1/3, 0, 0]; p_A = [.7, .1, .1, .1]."""
    from lm.decoding import _processors

    expert, amateur = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]])), torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1]]))
    scores = ContrastiveCombine(alpha=0.5)(expert, amateur)
    eps = 1e-8
    expected = [math.log(2 / 3 + eps) - 0.5 * math.log(0.7 + eps), math.log(1 / 3 + eps) - 0.5 * math.log(0.1 + eps),
                math.log(eps) - 0.5 * math.log(0.1 + eps), math.log(eps) - 0.5 * math.log(0.1 + eps)]
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-5)     # -0.2271, 0.0527, -17.27, -17.27
    assert scores.argmax().item() == 1                                # the amateur's favourite loses
    # repetition penalty 2 on the score, tokens 0 and 1 already seen: negative * 2, positive / 2
    penalised = _processors(False, 1.0, 0, 1.0, 2.0)(torch.tensor([[0, 1]]), scores.clone())
    assert penalised[0].tolist() == pytest.approx([expected[0] * 2, expected[1] / 2, *expected[2:]], abs=1e-5)


@pytest.fixture()
def user_handle(tiny_causal_lm):
    handle = load_model(str(tiny_causal_lm), backend="hf")
    torch.manual_seed(3)
    handle.add_adapter(USER_ADAPTER, LoraOptions(r=8, alpha=32, dropout=0.0, zero_init=False))
    return handle


def test_alpha_zero_is_plain_greedy_decoding_of_the_expert(oppu_folder, user_handle):
    spec, users = read_users(oppu_folder, None)
    plain, contrastive = DecodingSettings(max_new_tokens=8), DecodingSettings(max_new_tokens=8, is_cd=True,
                                                                           contrastive_alpha=0.0)
    for user in users:
        expected = decode_user(user_handle, spec, user, plain, seed=0, contrastive=False)
        assert decode_user(user_handle, spec, user, contrastive, seed=0, contrastive=True) == expected
    # plain decoding runs with the user's adapter (not the TAM alone) ...
    prompts = [query_prompt(spec, user.queries[0]) for user in users]
    tam_texts = user_handle.generate(prompts, max_new_tokens=8, adapter_names=[BASE] * len(users))
    assert [postprocess(spec, text) for text in tam_texts] != \
        [decode_user(user_handle, spec, user, plain, 0, False)[user.queries[0].id] for user in users]
    # ... and a large alpha does change the text, so the contrastive path is really taken
    strong = DecodingSettings(max_new_tokens=8, is_cd=True, contrastive_alpha=5.0)
    assert any(decode_user(user_handle, spec, user, strong, 0, True) !=
               decode_user(user_handle, spec, user, plain, 0, False) for user in users)


# ----------------------------------------------------------------------------- negatives

def test_select_negative_max_and_min():
    tam_scores, oppu_scores = [-1.0, -2.0, -0.5], [-1.5, -1.0, -0.6]      # diffs 0.5, -1.0, 0.1
    assert select_negative(tam_scores, oppu_scores, "max") == (0, pytest.approx([0.5, -1.0, 0.1]))
    assert select_negative(tam_scores, oppu_scores, "min")[0] == 1
    with pytest.raises(ValueError):
        select_negative(tam_scores, oppu_scores, "mean")


def test_score_user_contrasts_the_adapter_with_the_tam(oppu_folder, user_handle):
    spec, users = read_users(oppu_folder, None)
    user = users[0]
    candidates = [{"id": item["id"], "pseudo_negative": ["alice one", "bob first story", "zzz"]}
                  for item in user.profile]
    rows = score_user(user_handle, spec, user, candidates, "max", batch_size=4)
    prompts = [item_prompt(spec, item) for item in user.profile for _ in range(3)]
    targets = [text for row in candidates for text in row["pseudo_negative"]]
    oppu = [s.mean_logprob for s in user_handle.score(prompts, targets, adapter_names=[USER_ADAPTER] * 9)]
    tam_scores = [s.mean_logprob for s in user_handle.score(prompts, targets, adapter_names=[BASE] * 9)]
    for i, row in enumerate(rows):
        assert row["OPPU_scores"] == pytest.approx(oppu[3 * i:3 * i + 3], abs=1e-4)
        assert row["base_scores"] == pytest.approx(tam_scores[3 * i:3 * i + 3], abs=1e-4)
        diffs = [t - o for t, o in zip(row["base_scores"], row["OPPU_scores"])]
        assert row["negative_response"] == row["pseudo_negative"][diffs.index(max(diffs))]


# ----------------------------------------------------------------------------- DPO

def margin(handle, prompts, chosen, rejected, adapter) -> float:
    good = handle.score(prompts, chosen, adapter_names=[adapter] * len(prompts))
    bad = handle.score(prompts, rejected, adapter_names=[adapter] * len(prompts))
    return sum(g.sum_logprob - b.sum_logprob for g, b in zip(good, bad))


def test_dpo_moves_the_user_adapter_toward_chosen(oppu_folder, tiny_causal_lm, tmp_path):
    spec, users = read_users(oppu_folder, None)
    user = users[0]
    handle = load_model(str(tiny_causal_lm), backend="hf")
    handle.add_adapter(USER_ADAPTER, lora(USER_LORA))
    handle.save_adapter(USER_ADAPTER, tmp_path / "sft")
    handle.delete_adapter(USER_ADAPTER)
    selection = [{"id": item["id"], "negative_response": "zzz qqq"} for item in user.profile]
    prompts = [item_prompt(spec, item) for item in user.profile]
    chosen = [item_target(spec, item) for item in user.profile]
    rejected = ["zzz qqq"] * len(prompts)
    handle.load_adapter(USER_ADAPTER, tmp_path / "sft")
    before = margin(handle, prompts, chosen, rejected, USER_ADAPTER)
    handle.delete_adapter(USER_ADAPTER)
    dpo_user(handle, spec, user, selection, tmp_path / "sft",
             TrainOptions(epochs=5, learning_rate=5e-3, batch_size=3), beta=0.5, folder=tmp_path / "dpo")
    assert handle.adapters == []                               # nothing left on the shared base
    handle.load_adapter(USER_ADAPTER, tmp_path / "dpo")
    assert margin(handle, prompts, chosen, rejected, USER_ADAPTER) > before + 1
    # the reference, the TAM (adapter off), is untouched
    assert margin(handle, prompts, chosen, rejected, BASE) == pytest.approx(before, abs=1e-3)


# ----------------------------------------------------------------------------- the scripts end to end

def test_each_user_adapter_is_trained_on_that_users_history_alone(oppu_folder, tiny_causal_lm, trained_tam,
                                                                  monkeypatch):
    import lm.train

    seen = []
    real = lm.train.train_sft

    def spy(handle, prompts, targets, adapter=None, **kwargs):
        seen.append((adapter, list(targets), [p[-1]["content"] for p in prompts]))
        return real(handle, prompts, targets, adapter=adapter, **kwargs)

    monkeypatch.setattr(lm.train, "train_sft", spy)
    assert run(oppu_sft.main, [*common(oppu_folder, tiny_causal_lm, trained_tam), "--max_epoch", "1",
                               "--is_train"]) == 0
    assert [targets for _, targets, _ in seen] == [[item["title"] for item in user["profile"]] for user in TARGETS]
    for (adapter, _, inputs), user in zip(seen, TARGETS):
        assert adapter == USER_ADAPTER and all(user["user_id"] in text for text in inputs)
    for user in TARGETS:
        assert (user_adapter_folder(stage_root(trained_tam, SFT_STAGE), user["user_id"]) /
                "adapter_model.safetensors").is_file()


def test_a_killed_per_user_run_resumes_without_redoing_finished_users(oppu_folder, tiny_causal_lm, tmp_path,
                                                                      trained_tam, monkeypatch):
    import shutil

    import cope.pipeline

    out = tmp_path / "run"
    shutil.copytree(trained_tam / "TAM", out / "TAM")
    args = [*common(oppu_folder, tiny_causal_lm, out), "--max_epoch", "1", "--is_train"]
    trained, real = [], cope.pipeline.sft_user

    def killed_at_bob(handle, spec, user, options, folder):
        if user.name == "bob":
            raise KeyboardInterrupt
        trained.append(user.name)
        return real(handle, spec, user, options, folder)

    monkeypatch.setattr(cope.pipeline, "sft_user", killed_at_bob)
    with pytest.raises(KeyboardInterrupt):
        oppu_sft.main(args)
    stage = stage_root(out, SFT_STAGE)
    alice_done = (user_folder(stage, "alice") / DONE_FILE).stat().st_mtime_ns
    assert not user_folder(stage, "bob").exists()
    trained.clear()
    monkeypatch.setattr(cope.pipeline, "sft_user", lambda *a: (trained.append(a[2].name), real(*a))[1])
    assert run(oppu_sft.main, args) == 0
    assert trained == ["bob", "carol"]
    assert (user_folder(stage, "alice") / DONE_FILE).stat().st_mtime_ns == alice_done
    trained.clear()
    assert run(oppu_sft.main, args) == 0 and trained == []


def test_the_five_variants_end_to_end(oppu_folder, tiny_causal_lm, trained_tam, capsys):
    args = common(oppu_folder, tiny_causal_lm, trained_tam)
    decode = ["--max_new_tokens", "4"]
    if not (stage_root(trained_tam, SFT_STAGE) / "users.json").is_file():
        assert run(oppu_sft.main, [*args, "--max_epoch", "1", "--is_train"]) == 0
    assert run(oppu_sft.main, [*args, *decode]) == 0
    assert run(oppu_sft.main, [*args, *decode, "--is_cd", "--contrastive_alpha", "0.5"]) == 0
    assert run(generate_pseudo_negatives.main, [*args, "--response_num", "2", "--max_new_tokens", "4"]) == 0
    assert run(compute_scores.main, [*args, "--std", "min"]) == 0
    selection = json.loads((user_folder(trained_tam / "scores_min", "alice") / SELECTION_FILE).read_text())
    assert [row["id"] for row in selection] == [item["id"] for item in TARGETS[0]["profile"]]
    assert all(row["final_score_difference"] == min(row["score_differences"]) for row in selection)
    combined = json.loads((trained_tam / "user_top_100_history_with_pseudo_negatives_min.json").read_text())
    assert [len(item["pseudo_negative"]) for item in combined[1]["profile"]] == [2, 2]
    assert run(oppu_sft_dpo.main, [*args, "--mode", "min", "--is_train", "--batch_size", "2"]) == 0
    assert run(oppu_sft_dpo.main, [*args, *decode]) == 0
    assert run(oppu_sft_dpo.main, [*args, *decode, "--is_cd"]) == 0
    for variant in ("TAM", "OPPU", "OPPU+CD", "OPPU+DPO", "OPPU+DPO+CD"):
        scores = json.loads((trained_tam / variant / "scores.json").read_text())
        assert scores["num_examples"] == 3 and {"rouge-1", "rouge-L", "meteor"} <= scores.keys()
        assert json.loads((trained_tam / variant / "config.json").read_text())["method"] == "cope"
    # training.json beside every trained adapter: as many parameters as the adapter saved (the LoRA matrices)
    from safetensors.torch import load_file

    def saved(adapter: Path) -> int:
        return sum(t.numel() for t in load_file(adapter / "adapter_model.safetensors").values())

    folders = [trained_tam / "TAM"] + [user_folder(stage_root(trained_tam, stage), user["user_id"])
                                       for stage in (SFT_STAGE, DPO_STAGE) for user in TARGETS]
    for folder in folders:
        trainable = json.loads((folder / "training.json").read_text())["trainable_parameters"]
        assert trainable == saved(folder / "adapter") > 0
    # DPO needs the selection it names
    assert run(oppu_sft_dpo.main, [*args, "--mode", "max", "--is_train"]) == 2
    assert "scores_max" in capsys.readouterr().err


def test_inference_before_training_is_a_one_line_error(oppu_folder, tiny_causal_lm, tmp_path, capsys):
    assert run(oppu_sft.main, common(oppu_folder, tiny_causal_lm, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "OPPU_SFT" in err and "Traceback" not in err


def test_tam_test_outputs_are_reused_by_a_rerun(oppu_folder, tiny_causal_lm, trained_tam):
    log = trained_tam / "TAM" / "generations.jsonl"
    before = log.read_bytes(), log.stat().st_mtime_ns
    assert run(tam.main, [*common(oppu_folder, tiny_causal_lm, trained_tam), "--is_test",
                          "--max_new_tokens", "4"]) == 0
    assert (log.read_bytes(), log.stat().st_mtime_ns) == before


@pytest.mark.parametrize("contrastive", [[], ["--is_cd", "--contrastive_alpha", "0.5"]], ids=["plain", "cd"])
def test_users_decoded_together_equal_users_decoded_one_by_one(oppu_folder, tiny_causal_lm, trained_tam,
                                                                monkeypatch, contrastive):
    import cope.pipeline

    args = [*common(oppu_folder, tiny_causal_lm, trained_tam), "--max_new_tokens", "4", *contrastive]
    if not (stage_root(trained_tam, SFT_STAGE) / "users.json").is_file():
        assert run(oppu_sft.main, [*args, "--max_epoch", "1", "--is_train"]) == 0
    calls, real = [], cope.pipeline.decode_users
    monkeypatch.setattr(cope.pipeline, "decode_users", lambda handle, spec, users, *rest, **kw:
                        calls.append([user.name for user in users]) or real(handle, spec, users, *rest, **kw))
    assert run(oppu_sft.main, [*args, "--users_per_batch", "1", "--run_name", "one_by_one"]) == 0
    assert calls == [["alice"], ["bob"], ["carol"]]
    calls.clear()
    assert run(oppu_sft.main, [*args, "--users_per_batch", "3", "--run_name", "together"]) == 0
    assert calls == [["alice", "bob", "carol"]]
    one_by_one = json.loads((trained_tam / "one_by_one" / "predictions.json").read_text())
    assert json.loads((trained_tam / "together" / "predictions.json").read_text()) == one_by_one


def test_pseudo_negatives_come_from_vllm_when_it_is_the_backend(oppu_folder, tiny_causal_lm, trained_tam,
                                                                 monkeypatch):
    """No vLLM here: the switch is checked with it faked; the merged TAM folder it writes for vLLM
    is checked by loading it with Hugging Face, which must give the merged model's outputs."""
    import lm.loading
    from cope.options import parsed
    from cope.pipeline import MERGED_TAM_DIR, load_sampling_model, load_task_model
    from data.cli import ModelOptions

    argv = common(oppu_folder, tiny_causal_lm, trained_tam)
    data, model = parsed(generate_pseudo_negatives.make_parser().parse_args(argv))
    hf_handle, stamp = load_sampling_model(model, data.root())
    assert hf_handle.backend == "hf" and not (trained_tam / MERGED_TAM_DIR).exists()

    served, real_load = [], ModelOptions.load
    monkeypatch.setattr(lm.loading, "vllm_available", lambda: True)
    monkeypatch.setattr(ModelOptions, "load", lambda self, **kw: served.append((self.model_name, kw)) or "vllm"
                        if kw.get("backend") == "vllm" else real_load(self, **kw))
    data, model = parsed(generate_pseudo_negatives.make_parser().parse_args([*argv, "--backend", "vllm"]))
    engine, same_stamp = load_sampling_model(model, data.root())
    folder = trained_tam / MERGED_TAM_DIR / stamp
    assert (engine, same_stamp) == ("vllm", stamp) and served == [(str(folder), {"backend": "vllm", "lora": None})]
    monkeypatch.undo()
    prompts = ["The reporter wrote about the new bridge."]
    merged = load_model(folder)
    assert merged.generate(prompts, max_new_tokens=6) == load_task_model(model, data.root())[0].generate(
        prompts, max_new_tokens=6)


@pytest.mark.parametrize("contrastive", [False, True], ids=["plain", "cd"])
def test_per_user_decoding_serves_the_adapters_on_vllm_and_contrastive_decoding_says_it_uses_hf(
        oppu_folder, tiny_causal_lm, trained_tam, monkeypatch, caplog, contrastive):
    """vLLM faked: plain decoding loads the merged TAM on vLLM with LoRA limits from the users' adapter
    configs (rank 8 -> bucket 8, users_per_batch 2 -> max_loras 2); --is_cd logs one line and stays on HF."""
    import lm.loading
    from cope.options import parsed
    from cope.pipeline import MERGED_TAM_DIR, load_decoding_model
    from data.cli import ModelOptions, from_args
    from lm.vllm_backend import LoraServing

    args = [*common(oppu_folder, tiny_causal_lm, trained_tam), "--max_new_tokens", "4"]
    if not (stage_root(trained_tam, SFT_STAGE) / "users.json").is_file():
        assert run(oppu_sft.main, [*args, "--max_epoch", "1", "--is_train"]) == 0
    argv = [*args, "--backend", "vllm", "--users_per_batch", "2", *(["--is_cd"] if contrastive else [])]
    parsed_args = oppu_sft.make_parser().parse_args(argv)
    data, model = parsed(parsed_args)
    users = read_users(oppu_folder, "news_headline")[1]
    served, real_load = [], ModelOptions.load
    monkeypatch.setattr(lm.loading, "vllm_available", lambda: True)
    monkeypatch.setattr(ModelOptions, "load", lambda self, **kw: served.append((self.model_name, kw)) or "vllm"
                        if kw.get("backend") == "vllm" else real_load(self, **kw))
    handle, stamp = load_decoding_model(model, data.root(), stage_root(trained_tam, SFT_STAGE), users,
                                        from_args(DecodingSettings, parsed_args))
    fallback = [record for record in caplog.records if "vLLM cannot do" in record.getMessage()]
    if contrastive:
        assert handle.backend == "hf" and served == [] and len(fallback) == 1
    else:
        lora = LoraServing(max_loras=2, max_lora_rank=8, max_cpu_loras=2)
        assert handle == "vllm" and fallback == []
        assert served == [(str(trained_tam / MERGED_TAM_DIR / stamp), {"backend": "vllm", "lora": lora})]
