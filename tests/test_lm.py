"""lm backend: generation, scoring, special tokens, encoders and load errors on tiny random models.

Tests marked realmodel use the packaged SmolLM2-135M-Instruct and all-MiniLM-L6-v2 on CPU.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessor

from data.errors import InputError
from lm import TargetScore, add_special_tokens, load_encoder, load_model
from lm.generation import generate_ids
from lm.prompting import encode_prompts

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Generate a headline for the following article.",
    "The reporter wrote about the new bridge and the city council celebrated the museum opening.",
    "Rate the review",
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Which category?"}],
    "A young scientist studied rising food prices.",
]
STRING_PROMPTS = [p for p in PROMPTS if isinstance(p, str)]
TARGETS = ["the new bridge", "a surprising result", "five", "the football match", "local elections"]


@pytest.fixture
def causal(tiny_causal_lm):
    return load_model(tiny_causal_lm, device="cpu")


@pytest.fixture
def seq2seq(tiny_seq2seq_lm):
    return load_model(tiny_seq2seq_lm, device="cpu")


class ForceTokens(LogitsProcessor):
    """Forces row r of the batch to emit token_per_row[r] at every step."""

    def __init__(self, token_per_row):
        self.token_per_row = torch.tensor(token_per_row)

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0]), self.token_per_row] = 0.0
        return forced


class ForceSequence(LogitsProcessor):
    """Forces the same token sequence (e.g. two words then EOS) on every row, step by step."""

    def __init__(self, prompt_width, tokens):
        self.prompt_width, self.tokens = prompt_width, tokens

    def __call__(self, input_ids, scores):
        step = min(input_ids.shape[1] - self.prompt_width, len(self.tokens) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[step]] = 0.0
        return forced


# ----------------------------------------------------------------------------- loading

def test_load_detects_architecture_device_and_dtype(causal, seq2seq):
    assert not causal.is_encoder_decoder and causal.has_chat_template and causal.backend == "hf"
    assert seq2seq.is_encoder_decoder and not seq2seq.has_chat_template
    assert causal.device == torch.device("cpu") and causal.model.dtype == torch.float32
    assert not causal.model.training


def test_dtype_override(tiny_causal_lm):
    assert load_model(tiny_causal_lm, device="cpu", dtype="bfloat16").model.dtype == torch.bfloat16


def test_weights_id_changes_with_the_weights_dtype_and_a_replaced_model(tiny_causal_lm, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_causal_lm, tmp_path / "model")
    first = load_model(folder, device="cpu")
    assert load_model(folder, device="cpu").weights_id == first.weights_id          # same weights: same id
    assert load_model(folder, device="cpu", dtype="bfloat16").weights_id != first.weights_id
    first.model.save_pretrained(folder)                                              # "retrained" in place
    assert load_model(folder, device="cpu").weights_id != first.weights_id
    before = first.weights_id
    first.model = first.model                                                        # e.g. wrapped by PEFT
    assert first.weights_id != before


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp / "no_such_model", "no such model file or folder"),
    (lambda tmp: tmp, "no config.json"),
    (lambda tmp: _write(tmp / "x.gguf", b"\x00garbage" * 100), "GGUF"),
    (lambda tmp: _write(tmp / "weights.bin", b"\x00" * 10), "expected a model folder or a .gguf file"),
])
def test_unloadable_models_raise_one_line_input_error(tmp_path, make_path, message):
    with pytest.raises(InputError, match=message) as caught:
        load_model(make_path(tmp_path), device="cpu")
    assert "\n" not in str(caught.value)


def test_corrupt_weights_are_an_input_error(tmp_path, tiny_causal_lm):
    folder = shutil.copytree(tiny_causal_lm, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputError, match="cannot load model") as caught:
        load_model(folder, device="cpu")
    assert "\n" not in str(caught.value)


def test_hub_id_missing_from_cache_is_an_input_error():
    with pytest.raises(InputError, match="not a local folder, .gguf file or hub id in the local HF cache"):
        load_model("lampkit-tests/definitely-not-cached", device="cpu")


def test_bad_device_dtype_backend_are_input_errors(tiny_causal_lm):
    for kwargs in ({"device": "gpu"}, {"dtype": "int3"}, {"backend": "tgi"}, {"backend": "vllm"}):
        with pytest.raises(InputError):
            load_model(tiny_causal_lm, **{"device": "cpu", **kwargs})


@pytest.mark.parametrize("command", [["-m", "lm.convert_default"], ["bench/bench_generate.py"],
                                     ["bench/bench_adapters.py"]])
def test_cli_help(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0 and result.stdout.startswith("usage:")


def test_importing_lm_sets_no_environment_variables_and_entry_scripts_default_to_offline():
    code = ("import os, sys; before = dict(os.environ); import lm, lm.loading, lm.train, lm.adapters; "
            "changed = {k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)}; "
            "from data.cli import run; run(lambda argv: 0); "
            "print(sorted(changed), os.environ['HF_HUB_OFFLINE'], os.environ['OMP_WAIT_POLICY'])")
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=clean)
    assert result.stdout.split() == ["[]", "1", "PASSIVE"], result.stderr
    # a value the user set wins
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**clean, "HF_HUB_OFFLINE": "0"})
    assert result.stdout.split()[1] == "0"


def test_loading_and_the_conversion_cli_import_in_one_direction():
    """lm.convert_default (the CLI) imports lm.loading; lm.loading never imports the CLI module."""
    import ast

    def imported(path):
        tree = ast.parse((REPO_ROOT / path).read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | \
            {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert "lm.loading" in imported("lm/convert_default.py")
    assert not {"lm.convert_default"} & imported("lm/loading.py")


def test_cli_reports_bad_input_in_one_line_with_exit_code_2(tmp_path):
    missing = tmp_path / "missing.gguf"
    result = subprocess.run([sys.executable, "-m", "lm.convert_default", "--gguf", str(missing),
                             "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: not an existing .gguf file"]


# ----------------------------------------------------------------------------- generation

@pytest.mark.parametrize("model_fixture", ["causal", "seq2seq"])
def test_batched_greedy_generation_equals_one_at_a_time_in_input_order(request, model_fixture):
    handle = request.getfixturevalue(model_fixture)
    prompts = PROMPTS if handle.has_chat_template else STRING_PROMPTS
    batched = handle.generate(prompts, max_new_tokens=10, batch_size=3, progress=False)
    single = [handle.generate([prompt], max_new_tokens=10, batch_size=1, progress=False)[0] for prompt in prompts]
    assert batched == single
    assert len(set(batched)) > 1   # distinct outputs, so a reordering would have been caught


def test_empty_inputs_give_empty_outputs(causal, tiny_encoder):
    assert causal.generate([], progress=False) == [] and causal.score([], [], progress=False) == []
    assert load_encoder(tiny_encoder).encode([]).shape == (0, 32)


def test_generation_returns_only_new_text_without_special_tokens(causal):
    tok = causal.tokenizer
    words = tok(" team the", add_special_tokens=False)["input_ids"]
    prompts = ["Rate the review", "A young scientist studied rising food prices."]
    width = max(len(ids) for ids in encode_prompts(causal, prompts, chat=None, max_tokens=None))
    outputs = causal.generate(prompts, max_new_tokens=8, batch_size=2, progress=False,
                              logits_processor=ForceSequence(width, words + [tok.eos_token_id]))
    assert outputs == [tok.decode(words).strip()] * 2


def test_beam_search_and_seeded_sampling_are_reproducible(causal):
    beams = [causal.generate(PROMPTS, max_new_tokens=8, num_beams=3, progress=False) for _ in range(2)]
    assert beams[0] == beams[1] and all(isinstance(text, str) for text in beams[0])
    sample = dict(max_new_tokens=12, do_sample=True, temperature=3.0, top_k=0, top_p=1.0, progress=False)
    first, again = causal.generate(PROMPTS, seed=7, **sample), causal.generate(PROMPTS, seed=7, **sample)
    assert first == again
    assert causal.generate(PROMPTS, seed=8, **sample) != first


def test_repetition_penalty_changes_greedy_output(causal):
    plain = causal.generate(STRING_PROMPTS, max_new_tokens=16, progress=False)
    penalized = causal.generate(STRING_PROMPTS, max_new_tokens=16, repetition_penalty=5.0, progress=False)
    assert plain != penalized


@pytest.mark.parametrize("num_beams", [1, 2])
def test_logits_processor_factory_sees_original_indices_and_can_force_tokens(causal, num_beams):
    token_of_example = _word_ids(causal.tokenizer, 5)
    seen_batches = []

    def factory(batch_indices):
        seen_batches.append(batch_indices)
        rows = [token_of_example[i] for i in batch_indices for _ in range(num_beams)]
        return ForceTokens(rows)

    outputs = causal.generate(PROMPTS, max_new_tokens=3, batch_size=2, num_beams=num_beams,
                              logits_processor=factory, progress=False)
    lengths = [len(ids) for ids in encode_prompts(causal, PROMPTS, chat=None, max_tokens=None)]
    order = sorted(range(len(PROMPTS)), key=lambda i: -lengths[i])
    assert seen_batches == [order[0:2], order[2:4], order[4:5]]
    expected = [causal.tokenizer.decode([token] * 3).strip() for token in token_of_example]
    assert outputs == expected


def test_plain_logits_processor_list_is_applied_to_every_batch(causal):
    team = causal.tokenizer.get_vocab()["Ġteam"]
    outputs = causal.generate(STRING_PROMPTS, max_new_tokens=2, batch_size=2, progress=False,
                              logits_processor=[ForceTokens([team, team])])
    assert outputs == ["team team"] * len(STRING_PROMPTS)


def test_over_long_prompts_keep_their_end_and_bos(causal):
    long_prompt = " ".join(STRING_PROMPTS * 4)
    full = encode_prompts(causal, [long_prompt], chat=False, max_tokens=None)[0]
    cut = encode_prompts(causal, [long_prompt], chat=False, max_tokens=12)[0]
    assert len(full) > 12 and len(cut) == 12
    assert cut[0] == causal.tokenizer.bos_token_id and cut[1:] == full[-11:]
    assert len(causal.generate([long_prompt], max_new_tokens=4, max_input_tokens=12, progress=False)) == 1


def test_chat_handling(causal, seq2seq):
    rendered = causal.tokenizer.decode(encode_prompts(causal, ["hello there"], chat=None, max_tokens=None)[0])
    assert rendered == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    raw = encode_prompts(causal, ["hello there"], chat=False, max_tokens=None)[0]
    assert raw[0] == causal.tokenizer.bos_token_id and "<|im_start|>" not in causal.tokenizer.decode(raw)
    with pytest.raises(InputError, match="no chat template"):
        seq2seq.generate(["hello"], chat=True, progress=False)
    with pytest.raises(ValueError, match="chat message lists"):
        causal.generate([[{"role": "user", "content": "hi"}]], chat=False, progress=False)


# ----------------------------------------------------------------------------- scoring

@pytest.mark.parametrize("model_fixture", ["causal", "seq2seq"])
def test_batched_scores_equal_one_at_a_time(request, model_fixture):
    handle = request.getfixturevalue(model_fixture)
    prompts = PROMPTS if handle.has_chat_template else [str(p) for p in PROMPTS]
    batched = handle.score(prompts, TARGETS, batch_size=4, progress=False)
    single = [handle.score([p], [t], batch_size=1, progress=False)[0] for p, t in zip(prompts, TARGETS)]
    for got, want in zip(batched, single):
        assert isinstance(got, TargetScore) and got.num_tokens == want.num_tokens > 0
        assert got.sum_logprob == pytest.approx(want.sum_logprob, rel=1e-4, abs=1e-4)
        assert got.mean_logprob == pytest.approx(got.sum_logprob / got.num_tokens)
        assert got.sum_logprob < 0


def test_causal_score_matches_a_manual_forward_pass(causal):
    prompt_ids = encode_prompts(causal, ["Rate the review"], chat=False, max_tokens=None)[0]
    target_ids = causal.tokenizer("five stars", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = causal.model(torch.tensor([prompt_ids + target_ids])).logits[0]
    logprobs = logits.log_softmax(-1)[len(prompt_ids) - 1:-1].gather(-1, torch.tensor(target_ids)[:, None])
    score = causal.score(["Rate the review"], ["five stars"], chat=False, progress=False)[0]
    assert score.sum_logprob == pytest.approx(logprobs.sum().item(), abs=1e-4)


@pytest.mark.parametrize("model_fixture, target_modules", [("causal", ["q_proj", "v_proj"]),
                                                           ("seq2seq", ["q", "v"])])
def test_lora_adapter_on_changes_scores_and_off_restores_them(request, model_fixture, target_modules):
    from peft import LoraConfig, get_peft_model

    handle = request.getfixturevalue(model_fixture)
    prompts = [str(p) for p in PROMPTS]
    base = handle.score(prompts, TARGETS, progress=False)
    # init_lora_weights=False gives a non-zero random update, as after some training.
    handle.model = get_peft_model(handle.model, LoraConfig(r=4, target_modules=target_modules,
                                                           init_lora_weights=False))
    adapted = handle.score(prompts, TARGETS, progress=False)
    with handle.model.disable_adapter():
        disabled = handle.score(prompts, TARGETS, progress=False)
    assert all(abs(a.sum_logprob - b.sum_logprob) > 1e-3 for a, b in zip(adapted, base))
    assert [s.sum_logprob for s in disabled] == pytest.approx([s.sum_logprob for s in base], abs=1e-4)
    assert len(handle.generate(prompts, max_new_tokens=4, progress=False)) == len(prompts)


def test_empty_target_is_an_input_error(causal):
    with pytest.raises(InputError, match="target 1 is empty"):
        causal.score(["a", "b"], ["x", ""], progress=False)


# ----------------------------------------------------------------------------- special tokens

def test_add_special_tokens_resizes_embeddings_and_keeps_tokens_whole(causal):
    before = causal.model.get_input_embeddings().num_embeddings
    ids = add_special_tokens(causal.model, causal.tokenizer, ["<USR_EMB>", "<PAD_X>"])
    assert ids == [before, before + 1]
    assert causal.model.get_input_embeddings().num_embeddings == before + 2
    encoded = causal.tokenizer("a <USR_EMB> b", add_special_tokens=False)["input_ids"]
    assert ids[0] in encoded
    assert add_special_tokens(causal.model, causal.tokenizer, ["<USR_EMB>"]) == ids[:1]
    assert causal.model.get_input_embeddings().num_embeddings == before + 2
    assert len(causal.generate(["Rate the review"], max_new_tokens=3, progress=False)) == 1


# ----------------------------------------------------------------------------- encoder

def test_encoder_mean_pools_deduplicates_and_keeps_order(tiny_encoder):
    encoder = load_encoder(tiny_encoder, device="cpu")
    texts = ["the new bridge", "a surprising result about the football match", "the new bridge", "x"]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == torch.float32
    assert torch.equal(vectors[0], vectors[2])
    one_by_one = torch.cat([encoder.encode([t], batch_size=1) for t in texts])
    assert torch.allclose(vectors, one_by_one, atol=1e-5)
    ids = encoder.tokenizer(texts[1], return_tensors="pt")
    with torch.no_grad():
        manual = encoder.model(**ids).last_hidden_state[0].mean(0)
    assert torch.allclose(vectors[1], manual, atol=1e-5)
    normalized = encoder.encode(texts, normalize=True)
    assert torch.allclose(normalized.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_encoder_errors(tmp_path):
    with pytest.raises(InputError, match="no such model file or folder"):
        load_encoder(tmp_path / "missing")


# ----------------------------------------------------------------------------- real models

NEWS = ("The city council of Springfield voted on Tuesday to approve a $40 million plan to rebuild the aging "
        "Main Street bridge, which engineers said was at risk of collapse. Construction will begin next spring "
        "and is expected to take two years, during which traffic will be diverted to a new ring road.")


@pytest.mark.realmodel
def test_default_model_writes_a_sensible_headline(default_lm):
    headline = default_lm.generate([f"Generate a headline for the following article: {NEWS}"],
                                   max_new_tokens=32, progress=False)[0]
    words = re.findall(r"[A-Za-z']+", headline)
    assert words and len(words) >= 0.6 * len(headline.split())
    content_words = {w.lower() for w in re.findall(r"[A-Za-z]{5,}", NEWS)}
    assert content_words & {w.lower() for w in words}, headline


@pytest.mark.realmodel
def test_default_model_prefers_the_right_answer(default_lm):
    right, wrong = default_lm.score(["What is the capital of France?"] * 2, ["Paris", "Berlin"], progress=False)
    assert right.sum_logprob > wrong.sum_logprob


@pytest.mark.realmodel
def test_converted_default_model_equals_the_packaged_gguf(default_lm):
    from lm.packaged import packaged_gguf

    gguf = load_model(packaged_gguf(), device="cpu")
    ids = default_lm.tokenizer("The quick brown fox", return_tensors="pt")
    assert gguf.tokenizer("The quick brown fox")["input_ids"] == ids["input_ids"][0].tolist()
    with torch.no_grad():
        assert torch.equal(gguf.model(**ids).logits, default_lm.model(**ids).logits)


@pytest.mark.realmodel
def test_default_encoder_matches_sentence_transformers(default_encoder):
    from sentence_transformers import SentenceTransformer

    from lm.packaged import packaged_encoder_dir

    texts = [NEWS, "Springfield bridge rebuild approved", "cats", "cats", "A " + "very long text " * 200]
    reference = SentenceTransformer(str(packaged_encoder_dir()), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True)
    ours = default_encoder.encode(texts, batch_size=2, normalize=True)
    assert ours.shape == (5, 384)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


def _word_ids(tokenizer, count):
    """Ids of `count` distinct word tokens (first pieces of a few words)."""
    ids = tokenizer(" team the bridge match prices", add_special_tokens=False)["input_ids"]
    return list(dict.fromkeys(ids))[:count]


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("model_fixture", ["causal", "seq2seq"])
def test_right_truncation_keeps_the_first_tokens_like_hf_truncation(request, model_fixture):
    handle = request.getfixturevalue(model_fixture)
    long_prompt = " ".join(STRING_PROMPTS * 4)
    full = encode_prompts(handle, [long_prompt], chat=False, max_tokens=None)[0]
    cut = encode_prompts(handle, [long_prompt], chat=False, max_tokens=12, truncation_side="right")[0]
    assert len(full) > 12 and len(cut) == 12
    # Exactly what the reference's tokenizer(prompt, truncation=True, max_length=12) gives: the text's
    # start, with the tokenizer's special tokens kept (the causal BOS first, T5's </s> last).
    tokenizer = handle.tokenizer
    assert tokenizer.truncation_side == "right"
    assert cut == tokenizer(long_prompt, truncation=True, max_length=12)["input_ids"]
    if handle.is_encoder_decoder:
        assert cut[-1] == tokenizer.eos_token_id and cut[:11] == full[:11]
    else:
        assert cut == full[:12] and cut[0] == tokenizer.bos_token_id
    short = encode_prompts(handle, STRING_PROMPTS, chat=False, max_tokens=None)
    assert encode_prompts(handle, STRING_PROMPTS, chat=False, max_tokens=12 + max(map(len, short)),
                          truncation_side="right") == short


def test_right_truncation_with_a_chat_template_cuts_the_content_and_keeps_the_turn(causal):
    long_prompt = " ".join(STRING_PROMPTS * 4)
    cut = encode_prompts(causal, [long_prompt], chat=True, max_tokens=20, truncation_side="right")[0]
    text = causal.tokenizer.decode(cut)
    assert len(cut) <= 20
    assert text.startswith("<|im_start|>user\n" + long_prompt[:5])
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="string prompts"):
        encode_prompts(causal, [[{"role": "user", "content": long_prompt}]], chat=True, max_tokens=5,
                       truncation_side="right")
    with pytest.raises(ValueError, match="truncation_side"):
        encode_prompts(causal, [long_prompt], chat=False, max_tokens=5, truncation_side="middle")


def test_generate_passes_right_truncation_to_the_model(causal, monkeypatch):
    long_prompt = " ".join(STRING_PROMPTS * 4)
    full = encode_prompts(causal, [long_prompt], chat=False, max_tokens=None)[0]
    seen = []
    original = causal.model.generate

    def spy(input_ids, attention_mask, **kwargs):
        seen.append(input_ids[attention_mask.bool()].tolist())
        return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(causal.model, "generate", spy)
    causal.generate([long_prompt], max_new_tokens=2, max_input_tokens=12, truncation_side="right", chat=False,
                    progress=False)
    causal.generate([long_prompt], max_new_tokens=2, max_input_tokens=12, chat=False, progress=False)
    assert seen == [full[:12], [full[0]] + full[-11:]]


# ----------------------------------------------------------------------------- short-answer decoding
class ForceRowSequences(LogitsProcessor):
    """Forces row r to write sequences[r] step by step (its last token again once the sequence is used up)."""

    def __init__(self, prompt_width, sequences):
        self.prompt_width, self.sequences = prompt_width, sequences

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_width
        forced = torch.full_like(scores, float("-inf"))
        for row, tokens in enumerate(self.sequences):
            forced[row, tokens[min(step, len(tokens) - 1)]] = 0.0
        return forced


def test_stop_at_newline_ends_each_row_after_its_first_non_blank_line(causal):
    vocab = causal.tokenizer.get_vocab()
    newline, team, the = vocab["Ċ"], vocab["Ġteam"], vocab["Ġthe"]
    prompts = ["Rate the review", "A young scientist studied rising food prices."]
    width = max(len(ids) for ids in encode_prompts(causal, prompts, chat=None, max_tokens=None))
    # Row 0: a blank line, a line, then more lines; row 1: one line that never ends.
    rows = [[newline, team, the, newline, the, newline, team, team], [team, the] * 4]
    options = dict(max_new_tokens=8, batch_size=2, progress=False,
                   logits_processor=lambda batch: ForceRowSequences(width, [rows[i] for i in batch]))
    assert generate_ids(causal, prompts, **options) == rows
    stopped = generate_ids(causal, prompts, stop_at_newline=True, **options)
    assert stopped == [[newline, team, the, newline], [team, the] * 4]
    assert causal.generate(prompts, stop_at_newline=True, **options) == ["team the", " ".join(["team the"] * 4)]


def test_output_repetition_penalty_stops_loops_but_spares_the_prompt(causal):
    plain = generate_ids(causal, STRING_PROMPTS, max_new_tokens=16, progress=False)
    assert any(len(set(ids)) < len(ids) for ids in plain)          # the random model loops
    penalized = generate_ids(causal, STRING_PROMPTS, max_new_tokens=16, output_repetition_penalty=1e6,
                             progress=False)
    assert all(len(set(ids)) == len(ids) for ids in penalized)
    # The first new token is never penalized, even when the prompt holds it (the plain penalty would).
    prompt_ids = encode_prompts(causal, STRING_PROMPTS, chat=None, max_tokens=None)
    echoed = [i for i, ids in enumerate(plain) if ids[0] in prompt_ids[i]]
    assert echoed
    assert [penalized[i][0] for i in echoed] == [plain[i][0] for i in echoed]
    everywhere = generate_ids(causal, STRING_PROMPTS, max_new_tokens=1, repetition_penalty=1e6, progress=False)
    assert all(everywhere[i][0] != plain[i][0] for i in echoed)
    with pytest.raises(InputError, match="output_repetition_penalty"):
        causal.generate(STRING_PROMPTS, output_repetition_penalty=0.0, progress=False)


def test_resolve_encoder_prefers_the_cached_reference_encoder_and_never_downloads(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from lm import resolve_encoder

    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--org--encoder" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--encoder" / "refs").mkdir()
    (tmp_path / "models--org--encoder" / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_encoder("auto", "org/encoder") == "org/encoder"          # in the cache: the reference's
    assert resolve_encoder("auto", "org/missing") == "default"              # not cached: the packaged MiniLM
    assert resolve_encoder("some/folder", "org/encoder") == "some/folder"   # anything else is kept
