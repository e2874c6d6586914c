"""logit_adjust: processor, token maps, user vectors and the CLI, on tiny random models (fast)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from data.records import Example
from data.tasks import get_task
from logit_adjust.experiment import generation_tasks, profile_word_share, select_users
from logit_adjust.processor import UserBiasFactory, UserBiasLogitsProcessor, fit_width
from logit_adjust.token_maps import special_token_ids, unigram_biases, user_biases, word_like_ids
from logit_adjust.user_vectors import UserProfile, UserVectors, user_profile

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC = get_task("LongLaMP_2")
# Whole tokens of the tiny tokenizer (trained on sentences using these verbs): each user's planted vocabulary.
PLANTED = {"a": ("studied", "reviewed"), "b": ("celebrated", "announced")}


def planted_example(user: str, question: str) -> Example:
    words = " ".join(PLANTED[user] * 6)
    profile = [{"id": f"{user}{i}", "title": "notes", "abstract": words, "year": 2020} for i in range(3)]
    return Example(id=f"{user}-{question[:8]}", input=question, profile=profile, target="x", user_id=user,
                   task=SPEC.name)


@pytest.fixture(scope="module")
def tiny_handle(tiny_causal_lm):
    from lm import load_model

    return load_model(tiny_causal_lm, device="cpu")


@pytest.fixture(scope="module")
def tiny_text_encoder(tiny_encoder):
    from lm import load_encoder

    return load_encoder(tiny_encoder, device="cpu")


def words_of(text: str) -> set[str]:
    return set(text.lower().split())


# ----------------------------------------------------------------------------- processor

def test_processor_pads_bias_and_zeroes_special_tokens():
    bias = torch.arange(1.0, 21.0).reshape(2, 10)
    scores = torch.zeros(2, 15)
    out = UserBiasLogitsProcessor(bias, beta=0.5, zero_ids=[0, 3, 12])(None, scores)
    assert out.shape == (2, 15)
    expected = 0.5 * fit_width(bias, 15)
    expected[:, [0, 3]] = 0
    assert torch.equal(out, expected)
    assert torch.all(out[:, 10:] == 0)                       # padded to the logits' size
    assert torch.equal(fit_width(bias, 4), bias[:, :4])      # a wider bias is cut


def test_processor_beta_zero_returns_scores_untouched():
    scores = torch.randn(3, 7)
    assert UserBiasLogitsProcessor(torch.randn(3, 7), beta=0.0)(None, scores) is scores
    assert UserBiasFactory(torch.randn(2, 7), [0, 1], beta=0.0)([0, 1]) is None


def test_processor_repeats_rows_for_beams_in_repeat_interleave_order():
    bias = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = UserBiasLogitsProcessor(bias, beta=1.0)(None, torch.zeros(6, 2))
    assert out.tolist() == [[1, 0]] * 3 + [[0, 1]] * 3
    with pytest.raises(ValueError):
        UserBiasLogitsProcessor(bias, beta=1.0)(None, torch.zeros(3, 2))


def test_factory_picks_the_batch_rows_by_original_index():
    table = torch.eye(3)
    factory = UserBiasFactory(table, rows=[2, 0, 1, 2], beta=2.0)
    assert factory([3, 1])(None, torch.zeros(2, 3)).tolist() == [[0, 0, 2], [2, 0, 0]]


# ----------------------------------------------------------------------------- generation through lm

def test_beta_zero_gives_exactly_the_baseline(tiny_handle):
    prompts = ["The reporter wrote about", "A young scientist studied the new bridge and", "Our team"]
    bias = torch.randn(3, len(tiny_handle.tokenizer))
    for options in ({}, {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "seed": 3}, {"num_beams": 3}):
        baseline = tiny_handle.generate(prompts, max_new_tokens=12, batch_size=2, progress=False, **options)
        with_factory = tiny_handle.generate(prompts, max_new_tokens=12, batch_size=2, progress=False,
                                            logits_processor=UserBiasFactory(bias, [0, 1, 2], 0.0), **options)
        always_on = tiny_handle.generate(prompts, max_new_tokens=12, batch_size=2, progress=False,
                                         logits_processor=lambda batch: UserBiasLogitsProcessor(bias[batch], 0.0),
                                         **options)
        assert with_factory == baseline and always_on == baseline, options


def planted_factory(handle, examples, beta):
    profiles = [user_profile(SPEC, example) for example in examples]
    unique = list({p.key: p for p in profiles}.values())
    biases = unigram_biases(handle.tokenizer, unique, unique)
    rows = [[p.key for p in unique].index(p.key) for p in profiles]
    return UserBiasFactory(biases, rows, beta, special_token_ids(handle.tokenizer, handle.model))


DECODINGS = {"greedy": {}, "beam": {"num_beams": 3},
             "sampling": {"do_sample": True, "temperature": 0.9, "top_p": 0.95, "top_k": 50, "seed": 1}}


@pytest.mark.parametrize("decoding", DECODINGS)
def test_each_row_gets_its_own_users_bias(tiny_handle, decoding):
    # Different prompt lengths, so lm's length-sorted batches mix and reorder the two users.
    questions = ["The", "The old farmer announced local elections and then", "Our team reviewed",
                 "A student wrote about the museum opening", "My neighbour"]
    examples = [planted_example("ab"[i % 2], q) for i, q in enumerate(questions)]
    texts = tiny_handle.generate([e.input for e in examples], max_new_tokens=6, batch_size=2, progress=False,
                                 logits_processor=planted_factory(tiny_handle, examples, 1000.0),
                                 **DECODINGS[decoding])
    for example, text in zip(examples, texts):
        assert words_of(text) and words_of(text) <= set(PLANTED[example.user_id]), (example.user_id, text)


def test_bias_is_padded_when_the_model_vocab_is_larger(tmp_path, tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lm import load_model

    config = LlamaConfig(vocab_size=len(tiny_tokenizer) + 13, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                         bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                         pad_token_id=tiny_tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    handle = load_model(tmp_path, device="cpu")
    examples = [planted_example("a", "The reporter"), planted_example("b", "Our team")]
    texts = handle.generate([e.input for e in examples], max_new_tokens=4, progress=False,
                            logits_processor=planted_factory(handle, examples, 1000.0))
    assert words_of(texts[0]) <= set(PLANTED["a"]) and words_of(texts[1]) <= set(PLANTED["b"])


# ----------------------------------------------------------------------------- token maps and user vectors

def test_word_like_ids_exclude_special_and_fragment_tokens(tiny_tokenizer):
    ids = set(word_like_ids(tiny_tokenizer).tolist())
    assert not ids & set(special_token_ids(tiny_tokenizer))
    for token_id in ids:
        word = tiny_tokenizer.decode([token_id]).strip()
        assert word.isalpha() and len(word) >= 2
    assert tiny_tokenizer.convert_tokens_to_ids("Ġstudied") in ids
    assert tiny_tokenizer.convert_tokens_to_ids(".") not in ids


def test_only_word_start_pieces_are_word_like(tiny_tokenizer):
    # Byte-level BPE: "Ġcelebrated" starts a word; "brated" (of "cele|brated") and "cientist" continue one.
    ids = set(word_like_ids(tiny_tokenizer).tolist())
    vocabulary_ids = list(range(len(tiny_tokenizer)))
    pieces = dict(zip(tiny_tokenizer.convert_ids_to_tokens(vocabulary_ids), vocabulary_ids))
    assert pieces["Ġcelebrated"] in ids
    assert pieces["brated"] not in ids and pieces["cientist"] not in ids
    assert all(piece.startswith("Ġ") for piece, token_id in pieces.items() if token_id in ids)


def test_word_starts_survive_a_sentencepiece_style_decoder():
    # Metaspace tokenizers drop the space of a piece decoded alone ("▁hook" -> "hook"), so the space
    # must be read in running text, or "▁hook" and the continuation "hook" (of "webhook") look the same.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from logit_adjust.token_maps import vocabulary

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    backend.train_from_iterator(["the hook of a webhook and the military"] * 5,
                                trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"], show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    ids = {tokenizer.convert_tokens_to_ids(piece) for piece in ("▁hook", "hook", "▁military", "itary")}
    assert len(ids) == 4
    assert tokenizer.decode([tokenizer.convert_tokens_to_ids("▁hook")]) == "hook"      # the trap
    assert vocabulary(tokenizer)[tokenizer.convert_tokens_to_ids("▁hook")] == " hook"
    word_like = {tokenizer.convert_ids_to_tokens(i) for i in word_like_ids(tokenizer).tolist()}
    assert {"▁hook", "▁military"} <= word_like and not {"hook", "itary"} & word_like


def test_sbert_vocab_bias_of_each_token_is_its_own_strings_cosine(tmp_path, tiny_tokenizer, tiny_text_encoder):
    # Recomputed independently of token_maps: word-start pieces read off the byte-level marker "Ġ",
    # each word embedded alone; a shifted or shuffled id -> row mapping breaks the equality.
    profiles = [user_profile(SPEC, planted_example(u, "q")) for u in "ab"]
    biases = user_biases("sbert_vocab", tiny_tokenizer, profiles, encoder=tiny_text_encoder, cache_root=tmp_path)
    special = set(special_token_ids(tiny_tokenizer))
    pieces = tiny_tokenizer.convert_ids_to_tokens(list(range(len(tiny_tokenizer))))
    ids = [i for i, piece in enumerate(pieces)
           if i not in special and piece.startswith("Ġ") and piece[1:].isalpha() and len(piece) >= 3]
    words = tiny_text_encoder.encode([pieces[i][1:] for i in ids], normalize=True)
    cosines = UserVectors(tiny_text_encoder, tmp_path).vectors(profiles) @ words.T
    expected = (cosines - cosines.mean(1, keepdim=True)) / cosines.std(1, keepdim=True, correction=0)
    assert torch.allclose(biases[:, ids], expected, atol=0.02)   # token embeddings are cached in float16
    continuation = [i for i, piece in enumerate(pieces)
                    if i not in special and not piece.startswith("Ġ") and piece.isalpha() and len(piece) >= 2]
    assert continuation and torch.all(biases[:, continuation] == 0)


def test_sbert_vocab_bias_is_zscored_over_word_like_tokens_and_cached(tmp_path, tiny_tokenizer,
                                                                      tiny_text_encoder, monkeypatch):
    import logit_adjust.token_maps as token_maps

    examples = [planted_example("a", "q1"), planted_example("b", "q2"),
                Example(id="empty", input="q3", profile=[], target="x", user_id="c")]
    profiles = [user_profile(SPEC, e) for e in examples]
    biases = user_biases("sbert_vocab", tiny_tokenizer, profiles, encoder=tiny_text_encoder, cache_root=tmp_path)
    ids = word_like_ids(tiny_tokenizer)
    others = torch.ones(len(tiny_tokenizer), dtype=torch.bool)
    others[ids] = False
    assert biases.shape == (3, len(tiny_tokenizer))
    assert torch.allclose(biases[:2, ids].mean(1), torch.zeros(2), atol=1e-4)
    assert torch.allclose(biases[:2, ids].std(1, correction=0), torch.ones(2), atol=1e-4)
    assert torch.all(biases[:, others] == 0)
    assert torch.all(biases[2] == 0)                           # an empty profile carries no bias
    assert not torch.equal(biases[0], biases[1])

    # Second time, in a "new process": token embeddings and user vectors come from disk, no encoding.
    monkeypatch.setattr(token_maps, "_TOKEN_EMBEDDINGS", {})
    monkeypatch.setattr(tiny_text_encoder, "encode", lambda *a, **k: pytest.fail("encoded again"))
    again = user_biases("sbert_vocab", tiny_tokenizer, profiles, encoder=tiny_text_encoder, cache_root=tmp_path)
    assert torch.equal(again, biases)
    assert len(list((tmp_path / "token_embeddings").glob("*.pt"))) == 1
    assert len(list((tmp_path / "user_vectors").rglob("*.pt"))) == 3


def test_user_vectors_are_unit_norm_and_keyed_by_profile_content(tmp_path, tiny_text_encoder):
    vectors = UserVectors(tiny_text_encoder, tmp_path)
    same_user = [UserProfile("u", ("one text", "two texts")), UserProfile("u", ("an edited profile",))]
    rows = vectors.vectors(same_user)
    assert torch.allclose(rows.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(rows[0], rows[1])
    assert same_user[0].key != same_user[1].key
    expected = torch.nn.functional.normalize(
        tiny_text_encoder.encode(["one text", "two texts"], normalize=True).mean(0), dim=0)
    assert torch.allclose(rows[0], expected, atol=1e-5)


def test_unigram_bias_favours_the_users_own_tokens(tiny_tokenizer):
    profiles = [user_profile(SPEC, planted_example(u, "q")) for u in "ab"]
    biases = unigram_biases(tiny_tokenizer, profiles, profiles)
    for row, user in enumerate("ab"):
        top = set(biases[row].topk(2).indices.tolist())
        assert top == {tiny_tokenizer.convert_tokens_to_ids(f"Ġ{w}") for w in PLANTED[user]}
    unseen = tiny_tokenizer.convert_tokens_to_ids("Ġfarmer")
    assert torch.all(biases[:, unseen] == 0)                   # not in any profile: no evidence
    assert torch.all(biases[:, special_token_ids(tiny_tokenizer)] == 0)


def test_profile_word_share_and_user_selection():
    shares = profile_word_share(["The cat sat", "", "dog 42 DOG"], ["the cat", "anything", "a dog"])
    assert shares.tolist() == [pytest.approx(2 / 3), 0.0, 1.0]
    examples = [Example(id=str(i), input="x", user_id=u) for i, u in enumerate("aabca")]
    assert [e.id for e in select_users(examples, 2)] == ["0", "1", "2", "4"]
    assert len(select_users(examples, -1)) == 5


# ----------------------------------------------------------------------------- CLI

def run_main(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logit_adjust.main", *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def test_cli_writes_results_table_predictions_and_plot(tmp_path, tiny_causal_lm, tiny_encoder):
    out = tmp_path / "run"
    argv = ["--task", "LongLaMP-2", "--model_name", str(tiny_causal_lm), "--encoder", str(tiny_encoder),
            "--num_users", "3", "--beta", "0", "1", "5", "--max_new_tokens", "6", "--batch_size", "2",
            "--bootstrap_samples", "200", "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")]
    done = run_main(*argv)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert {"baseline", "personalized", "difference"} <= set(results)
    assert set(results["personalized"]) == set(results["difference"]) == {"1", "5"}
    for name in ("rouge-1", "rouge-L", "meteor", "profile_word_share"):
        assert name in results["baseline"]
        interval = results["difference"]["1"][name]
        assert interval["low"] <= interval["difference"] <= interval["high"]
    assert "| 0 (baseline) |" in (out / "results.md").read_text()
    assert (out / "metric_vs_beta.png").stat().st_size > 1000
    golds = json.loads((out / "beta_5_seed_0" / "predictions.json").read_text())
    assert golds["task"] == "LongLaMP_2" and len(golds["golds"]) == 3
    assert "outputs:" in done.stdout
    # One run folder per setting, each with runtime's files; the results agree with each folder's scores.json.
    for name, section in [("baseline_seed_0", results["baseline"]), ("beta_1_seed_0", results["personalized"]["1"]),
                          ("beta_5_seed_0", results["personalized"]["5"])]:
        assert {"config.json", "run.log", "prompts.jsonl", "generations.jsonl", "predictions.json",
                "scores.json"} <= {path.name for path in (out / name).iterdir()}
        scores = json.loads((out / name / "scores.json").read_text())
        for metric in ("rouge-1", "rouge-L", "meteor", "profile_word_share"):
            assert scores[metric] == pytest.approx(section[metric], abs=1e-9), (name, metric)
    beta_config = json.loads((out / "beta_5_seed_0" / "config.json").read_text())
    assert beta_config["method"] == "logit_adjust" and beta_config["beta"] == 5.0 and beta_config["seed"] == 0

    again = run_main(*argv)                                    # resumable: every run is reused
    assert again.returncode == 0
    assert again.stderr.count("reusing 3 finished generations") == 3


def test_eval_report_reads_the_run_folders_with_no_special_case(tmp_path, tiny_causal_lm):
    from eval.report import collect_rows
    from logit_adjust.main import main

    out = tmp_path / "run"
    assert main(["--task", "LongLaMP_2", "--model_name", str(tiny_causal_lm), "--token_map", "unigram",
                 "--num_users", "3", "--beta", "0", "2", "--max_new_tokens", "4", "--bootstrap_samples", "20",
                 "--output_dir", str(out)]) == 0
    rows = {row.name: row for row in collect_rows([out])}
    assert set(rows) == {"baseline_seed_0", "beta_2_seed_0"}
    results = json.loads((out / "results.json").read_text())
    assert rows["beta_2_seed_0"].num_predictions == 3
    assert rows["beta_2_seed_0"].metrics["profile_word_share"] == pytest.approx(
        results["personalized"]["2"]["profile_word_share"])
    assert rows["baseline_seed_0"].metrics["rouge-1"] == pytest.approx(results["baseline"]["rouge-1"])


def test_cli_lamp_task_with_unigram_map_and_sampling(tmp_path, tiny_causal_lm):
    out = tmp_path / "run"
    done = run_main("--task", "LaMP_4", "--model_name", str(tiny_causal_lm), "--token_map", "unigram",
                    "--num_users", "2", "--beta", "2", "--do_sample", "--num_seeds", "2", "--max_new_tokens", "5",
                    "--prompt_style", "raw", "--bootstrap_samples", "100", "--output_dir", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["setup"]["seeds"] == [0, 1] and set(results["baseline"]) == {
        "rouge-1", "rouge-L", "profile_word_share", "per_seed"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "baseline_seed_0", "baseline_seed_1", "beta_2_seed_0", "beta_2_seed_1"]
    assert not (out / "metric_vs_beta.png").exists()            # one beta: no plot


@pytest.mark.parametrize("task", generation_tasks())
def test_every_generation_task_runs_on_its_sample(task, tmp_path, tiny_causal_lm):
    from logit_adjust.main import main

    out = tmp_path / task
    assert main(["--task", task, "--model_name", str(tiny_causal_lm), "--token_map", "unigram", "--num_users", "2",
                 "--beta", "0", "1", "--max_new_tokens", "3", "--bootstrap_samples", "50",
                 "--output_dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["baseline"]) == {*get_task(task).metrics, "profile_word_share", "per_seed"}


@pytest.mark.parametrize("argv, message", [
    (["--task", "LaMP_1"], "error: LaMP_1 is a classification task"),
    (["--task", "LongLaMP_2", "--data_path", "missing.json"], "error: missing.json: file not found"),
    (["--task", "LongLaMP_2", "--num_users", "0"], "error: --num_users must be positive or -1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    done = run_main(*argv, "--output_dir", str(tmp_path / "x"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "logit_adjust.main", "--help"],
    [sys.executable, "-m", "logit_adjust.demo", "--help"],
    [sys.executable, "scripts/run_quick_experiment.py", "--help"],
    [sys.executable, "bench/bench_logit_adjust.py", "--help"],
    ["bash", "scripts/run_experiments.sh", "--help"],
])
def test_every_script_has_help(command):
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr


# ----------------------------------------------------------------------------- the experiment on hand-written data

def write_planted_longlamp(path: Path, users: str = "abab") -> Path:
    """A LongLaMP_2 file (abstract generation records, spec C) whose users each wrote only their planted words."""
    records = []
    for index, user in enumerate(users):
        words = " ".join(PLANTED[user] * 6)
        records.append({"name": f"user-{user}", "id": f"q{index}", "output": "x y",
                        "input": f'Generate an abstract for the title "{["Our team", "The reporter"][index % 2]}"',
                        "profile": [{"id": f"{user}{index}{k}", "title": "notes", "abstract": words, "year": 2020}
                                    for k in range(3)]})
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("decoding", [[], ["--do_sample", "--temperature", "0.9", "--top_p", "0.95"]],
                         ids=["greedy", "sampling"])
def test_experiment_steers_every_question_toward_its_own_user(tmp_path, tiny_causal_lm, decoding):
    from logit_adjust.main import main

    out = tmp_path / "run"
    assert main(["--task", "LongLaMP_2", "--data_path", str(write_planted_longlamp(tmp_path / "val.json")),
                 "--model_name", str(tiny_causal_lm), "--token_map", "unigram", "--num_users", "-1",
                 "--beta", "1000", "--max_new_tokens", "5", "--batch_size", "3", "--bootstrap_samples", "20",
                 "--output_dir", str(out), *decoding]) == 0
    steered = json.loads((out / "beta_1000_seed_0" / "predictions.json").read_text())["golds"]
    baseline = json.loads((out / "baseline_seed_0" / "predictions.json").read_text())["golds"]
    assert [row["id"] for row in steered] == ["q0", "q1", "q2", "q3"]
    for row, user in zip(steered, "abab"):
        assert words_of(row["output"]) and words_of(row["output"]) <= set(PLANTED[user]), (user, row)
    assert all(not words_of(row["output"]) <= set(PLANTED["a"] + PLANTED["b"]) for row in baseline)


def test_seed_command_line_runs_without_output_dir(tmp_path, tiny_causal_lm, tiny_encoder, monkeypatch):
    # The prototype's `main.py --task LongLaMP-2 --model_name M --num_users 10`, plus tiny-model speed flags.
    from logit_adjust.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["--task", "LongLaMP-2", "--model_name", str(tiny_causal_lm), "--num_users", "10",
                 "--encoder", str(tiny_encoder), "--cache_dir", str(tmp_path / "cache"), "--max_new_tokens", "3",
                 "--bootstrap_samples", "20"]) == 0
    folder = tmp_path / "runs" / "logit_adjust" / f"LongLaMP_2_{tiny_causal_lm.name}"
    results = json.loads((folder / "results.json").read_text())
    assert results["setup"]["num_users"] == 10 and set(results["personalized"]) == {"0.1"}
    assert not (folder / "samples.txt").exists()                 # only with --save_samples

    assert main(["--task", "LongLaMP-2", "--model_name", str(tiny_causal_lm), "--num_users", "2",
                 "--token_map", "unigram", "--max_new_tokens", "3", "--bootstrap_samples", "20",
                 "--experiment_name", "my_study"]) == 0
    named = tmp_path / "runs" / "logit_adjust" / "my_study"
    assert json.loads((named / "results.json").read_text())["setup"]["experiment"] == "my_study"
    assert (named / "results.md").read_text().startswith("## logit_adjust my_study: LongLaMP_2")


def test_save_samples_writes_the_first_questions_with_every_output(tmp_path, tiny_causal_lm):
    from logit_adjust.main import main

    out = tmp_path / "run"
    assert main(["--task", "LongLaMP_2", "--model_name", str(tiny_causal_lm), "--token_map", "unigram",
                 "--num_users", "7", "--beta", "0", "5", "--max_new_tokens", "4", "--bootstrap_samples", "20",
                 "--output_dir", str(out), "--save_samples"]) == 0
    blocks = (out / "samples.txt").read_text().strip().split("\n\n")
    assert len(blocks) == 5
    golds = json.loads((out / "golds.json").read_text())["golds"]
    predictions = {name: json.loads((out / f"{name}_seed_0" / "predictions.json").read_text())["golds"]
                   for name in ("baseline", "beta_5")}
    for index, block in enumerate(blocks):
        lines = block.split("\n")
        assert lines[0].startswith(f"== {index + 1}. question {golds[index]['id']}")
        assert lines[2] == f"gold: {golds[index]['output']}"
        assert lines[3] == f"baseline: {predictions['baseline'][index]['output']}"
        assert lines[4] == f"beta 5: {predictions['beta_5'][index]['output']}"


@pytest.mark.parametrize("level, info_lines", [("INFO", True), ("WARNING", False)])
def test_log_level_filters_run_log_and_stderr(tmp_path, tiny_causal_lm, level, info_lines):
    out = tmp_path / "run"
    done = run_main("--task", "LongLaMP_2", "--model_name", str(tiny_causal_lm), "--token_map", "unigram",
                    "--num_users", "2", "--beta", "1", "--max_new_tokens", "3", "--bootstrap_samples", "20",
                    "--output_dir", str(out), "--log_level", level)
    assert done.returncode == 0, done.stderr[-2000:]
    log_text = (out / "run.log").read_text()
    assert (" INFO " in log_text) is info_lines and (" INFO " in done.stderr) is info_lines


def test_cached_generations_key_on_the_bias_and_the_backend(tmp_path, tiny_causal_lm, tiny_encoder, monkeypatch):
    from lm.handle import ModelHandle
    from logit_adjust.main import main

    out = tmp_path / "run"
    argv = ["--task", "LongLaMP_2", "--model_name", str(tiny_causal_lm), "--token_map", "unigram", "--num_users", "2",
            "--beta", "1", "--max_new_tokens", "3", "--bootstrap_samples", "20", "--output_dir", str(out)]
    assert main(argv) == 0 and main(argv) == 0
    assert (out / "run.log").read_text().count("reusing 2 finished generations") == 2
    # Another bias (token map) in the same beta_1 folder: regenerated; the baseline has no bias and is reused.
    other_map = [*argv, "--token_map", "sbert_vocab", "--encoder", str(tiny_encoder), "--cache_dir", str(tmp_path)]
    assert main(other_map) == 0
    assert (out / "beta_1_seed_0" / "run.log").read_text().count("dropping 2 lines of another model") == 1
    assert (out / "baseline_seed_0" / "run.log").read_text().count("reusing 2 finished generations") == 2
    assert main(argv) == 0
    before = (out / "run.log").read_text()
    # Outputs of the HF backend are not served to a vLLM run (the handle here only reports vLLM).
    monkeypatch.setattr(ModelHandle, "backend", property(lambda self: "vllm"))
    assert main(argv) == 0
    this_run = (out / "run.log").read_text()[len(before):]
    assert "reusing" not in this_run and this_run.count("dropping 2 lines of another model") == 2


def test_unwritable_folders_fail_before_any_model_is_loaded(tmp_path, monkeypatch, capsys):
    import lm
    from data.cli import run
    from logit_adjust.main import main

    monkeypatch.setattr(lm, "load_model", lambda *a, **k: pytest.fail("loaded a model before checking folders"))
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    seed_command = ["--task", "LongLaMP-2", "--num_users", "2"]

    def fails(*extra: str) -> str:
        assert run(main, [*seed_command, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    assert "a_file is a file, not a folder" in fails("--output_dir", str(blocker / "sub"))
    assert "a_file is a file, not a folder" in fails("--cache_dir", str(blocker / "sub"))
    # The folders the run derives itself: runs/logit_adjust/<experiment_name> and $LAMPKIT_CACHE/logit_adjust.
    Path("runs").write_text("")
    assert fails().startswith("error: runs/logit_adjust/LongLaMP_2_default: cannot be created: runs is a file")
    Path("runs").unlink()
    monkeypatch.setenv("LAMPKIT_CACHE", str(blocker / "cache"))
    assert fails().startswith(f"error: {blocker / 'cache' / 'logit_adjust'}: cannot be created")
    assert not Path("runs").exists()                           # nothing was created on the way
    # A read-only cache folder, simulated: root (as in CI containers) may write into a chmod 555 folder.
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    monkeypatch.setenv("LAMPKIT_CACHE", str(read_only))
    real_temporary_file = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):
        if Path(dir) == read_only:
            raise PermissionError(13, "Permission denied")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    assert fails() == f"error: {read_only / 'logit_adjust'}: cannot write in {read_only}: Permission denied\n"
