"""Two-view decoding (lm.decoding) on a tiny random Llama wrapped with PEFT LoRA adapters.

The adapters are initialised with non-zero B matrices (init_lora_weights=False), so an adapter view and
the base view give different logits and a swapped or ignored view shows up in the tokens.
"""
import json
import math
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from data.errors import InputError
from lm import (BASE, ContrastiveCombine, LoraOptions, StepState, View, load_model, two_view_generate,
                two_view_generate_ids)
from lm.generation import generate_ids
from tiny_models import build_tokenizer

PROMPTS = [
    "The reporter wrote about the new bridge.",
    "Rate the review",
    "A young scientist studied rising food prices and the old farmer celebrated the museum opening.",
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Which category?"}],
    "Markets fell sharply after the announcement on Monday.",
]
NEW_TOKENS = 12
REPO_ROOT = Path(__file__).resolve().parent.parent


def first_view(logits_a, logits_b, state):
    return logits_a


def second_view(logits_a, logits_b, state):
    return logits_b


@pytest.fixture(scope="module")
def tiny_gpt2_lm(tmp_path_factory, tiny_tokenizer):
    """A random GPT-2: learned absolute positions, so wrong position ids under left padding change its output
    (Llama's rotary positions are relative and hide them)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                        pad_token_id=tiny_tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_gpt2_lm")
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def with_lora_adapters(handle, target_modules):
    """The handle with two random LoRA adapters, 'u1' (its default) and 'u2'."""
    torch.manual_seed(1)
    options = LoraOptions(r=4, alpha=8, dropout=0.0, target_modules=target_modules, zero_init=False)
    for name in ("u1", "u2"):
        handle.add_adapter(name, options)
    handle.activate_adapter("u1")
    return handle


@pytest.fixture(scope="module")
def lora_handle(tiny_causal_lm):
    """The tiny Llama with LoRA adapters 'u1' (active) and 'u2'."""
    return with_lora_adapters(load_model(tiny_causal_lm, device="cpu"), ["q_proj", "v_proj"])


@pytest.fixture(scope="module")
def lora_gpt2(tiny_gpt2_lm):
    """The tiny GPT-2 with LoRA adapters 'u1' (active) and 'u2' on its fused attention projection."""
    return with_lora_adapters(load_model(tiny_gpt2_lm, device="cpu"), ["c_attn"])


@pytest.fixture(scope="module")
def base_handle(tiny_causal_lm):
    """A second copy of the tiny model without adapters (the base view as a separate model)."""
    return load_model(tiny_causal_lm, device="cpu")


def decode_ids(view_a, view_b, combine, **options):
    options = {"max_new_tokens": NEW_TOKENS, "batch_size": 3, "progress": False, **options}
    return two_view_generate_ids(view_a, view_b, PROMPTS, combine, **options)


def plain_greedy(handle, **options):
    return generate_ids(handle, PROMPTS, max_new_tokens=NEW_TOKENS, batch_size=3, progress=False, **options)


@pytest.mark.parametrize("architecture", ["lora_handle", "lora_gpt2"])
def test_lora_adapters_change_the_output(request, architecture):
    lora_handle = request.getfixturevalue(architecture)
    assert plain_greedy(lora_handle) != plain_greedy(lora_handle.with_adapter(None))


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.5])
@pytest.mark.parametrize("architecture", ["lora_handle", "lora_gpt2"])
def test_combine_returning_one_view_equals_plain_greedy_of_that_view(request, architecture, repetition_penalty):
    lora_handle = request.getfixturevalue(architecture)
    adapter, base = View(lora_handle, "u1"), View(lora_handle, BASE)
    expected_adapter = plain_greedy(lora_handle, repetition_penalty=repetition_penalty)
    expected_base = plain_greedy(lora_handle.with_adapter(None), repetition_penalty=repetition_penalty)
    assert decode_ids(adapter, base, first_view, repetition_penalty=repetition_penalty) == expected_adapter
    assert decode_ids(adapter, base, second_view, repetition_penalty=repetition_penalty) == expected_base


def test_repetition_penalty_changes_greedy_output(lora_handle):
    adapter, base = View(lora_handle, "u1"), View(lora_handle, BASE)
    assert decode_ids(adapter, base, first_view) != decode_ids(adapter, base, first_view, repetition_penalty=1.5)


def test_two_adapters_of_one_model(lora_handle):
    u2 = lora_handle.with_adapter("u2")
    assert decode_ids(View(lora_handle, "u1"), View(lora_handle, "u2"), second_view) == plain_greedy(u2)
    # A view without an adapter name uses its handle's default adapter; handles made by with_adapter share
    # one model, so this is still one doubled forward per step.
    assert decode_ids(View(u2), View(lora_handle), second_view) == plain_greedy(lora_handle)
    assert decode_ids(View(u2), View(lora_handle), first_view) == plain_greedy(u2)


@pytest.mark.parametrize("combine", [first_view, ContrastiveCombine(alpha=0.5)], ids=["first_view", "contrastive"])
def test_per_prompt_adapters_in_one_batch_equal_each_adapter_alone(lora_handle, combine):
    """Users' prompts mixed in one batch, each row with its own adapter against the base: the same tokens
    as decoding each adapter's prompts on their own (rows stop at different steps, so names follow rows)."""
    owners = ["u1", "u2", "u2", "u1", "u2"]
    mixed = decode_ids(View(lora_handle), View(lora_handle, BASE), combine, row_adapters=owners)
    for name in ("u1", "u2"):
        rows = [i for i, owner in enumerate(owners) if owner == name]
        alone = two_view_generate_ids(View(lora_handle, name), View(lora_handle, BASE), [PROMPTS[i] for i in rows],
                                      combine, max_new_tokens=NEW_TOKENS, batch_size=3, progress=False)
        assert [mixed[i] for i in rows] == alone
    assert mixed != decode_ids(View(lora_handle), View(lora_handle, BASE), combine, row_adapters=["u1"] * 5)


def test_per_prompt_adapters_need_one_model_and_a_distinct_second_view(lora_handle, base_handle):
    with pytest.raises(InputError, match="need both views on one model"):
        decode_ids(View(lora_handle), View(base_handle), first_view, row_adapters=["u1"] * 5)
    with pytest.raises(InputError, match="'u2' is in both views"):
        decode_ids(View(lora_handle), View(lora_handle, "u2"), first_view, row_adapters=["u1", "u2", "u1", "u1", "u1"])


def test_text_output_equals_handle_generate(lora_handle):
    texts = two_view_generate(View(lora_handle, "u1"), View(lora_handle, BASE), PROMPTS, first_view,
                              max_new_tokens=NEW_TOKENS, batch_size=3, progress=False)
    assert texts == lora_handle.generate(PROMPTS, max_new_tokens=NEW_TOKENS, batch_size=3, progress=False)


class EndsSomeRowsEarly:
    """Contrastive combine that ends prompt 0 at step 3 and prompt 2 at step 5 (rows leave the batch mid-way)."""

    def __init__(self, eos):
        self.eos, self.combine = eos, ContrastiveCombine(alpha=0.5)

    def __call__(self, logits_a, logits_b, state):
        scores = self.combine(logits_a, logits_b, state)
        for prompt, step in ((0, 3), (2, 5)):
            if state.step == step:
                scores[state.prompt_indices.index(prompt), self.eos] = 1e9
        return scores


@pytest.mark.parametrize("separate_models", [False, True])
def test_cached_loop_equals_recomputing_loop(lora_handle, base_handle, separate_models):
    amateur = View(base_handle) if separate_models else View(lora_handle, BASE)
    combine = EndsSomeRowsEarly(lora_handle.tokenizer.eos_token_id)
    cached = decode_ids(View(lora_handle, "u1"), amateur, combine, batch_size=5)
    assert cached == decode_ids(View(lora_handle, "u1"), amateur, combine, batch_size=5, use_cache=False)
    assert [len(ids) for ids in cached] == [4, NEW_TOKENS, 6, NEW_TOKENS, NEW_TOKENS]
    assert cached != decode_ids(View(lora_handle, "u1"), amateur, first_view, batch_size=5)   # the combine matters


class RecordingCombine:
    """Contrastive combine that keeps every step's two logits tensors."""

    def __init__(self):
        self.combine, self.steps = ContrastiveCombine(alpha=0.5), []

    def __call__(self, logits_a, logits_b, state):
        self.steps.append((logits_a.clone(), logits_b.clone()))
        return self.combine(logits_a, logits_b, state)


@contextmanager
def rows_per_forward(*models):
    """One list per model collecting the batch size of each forward call of the (unwrapped) transformer."""
    calls = [[] for _ in models]
    hooks = [model.register_forward_hook(lambda module, args, kwargs, output, seen=seen:
                                         seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
             for model, seen in zip(models, calls)]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def test_doubled_batch_equals_two_separate_models(lora_handle, base_handle):
    shared_model = lora_handle.model.get_base_model()
    doubled, separate = RecordingCombine(), RecordingCombine()
    with rows_per_forward(shared_model, base_handle.model) as (shared_calls, base_calls):
        doubled_ids = decode_ids(View(lora_handle, "u1"), View(lora_handle, BASE), doubled, batch_size=5)
    # ONE forward per step over the batch doubled: 5 adapter rows + 5 base rows.
    assert shared_calls == [10] * len(doubled.steps) and base_calls == []
    with rows_per_forward(shared_model, base_handle.model) as (adapter_calls, base_calls):
        separate_ids = decode_ids(View(lora_handle, "u1"), View(base_handle), separate, batch_size=5)
    assert adapter_calls == base_calls == [5] * len(separate.steps)
    assert doubled_ids == separate_ids
    assert len(doubled.steps) == len(separate.steps) == NEW_TOKENS
    for (adapter_a, base_a), (adapter_b, base_b) in zip(doubled.steps, separate.steps):
        torch.testing.assert_close(adapter_a, adapter_b, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(base_a, base_b, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(adapter_a, base_a)   # the halves really are different views


def test_sampling_with_a_seed_repeats(lora_handle):
    views = View(lora_handle, "u1"), View(lora_handle, BASE)
    sample = dict(do_sample=True, temperature=2.0, top_k=50, top_p=0.95)
    combine = ContrastiveCombine(alpha=0.3)
    first = decode_ids(*views, combine, seed=7, **sample)
    assert decode_ids(*views, combine, seed=7, **sample) == first
    assert decode_ids(*views, combine, seed=8, **sample) != first
    assert first != decode_ids(*views, combine)


@pytest.mark.parametrize("narrow", [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-4}])
def test_sampling_warpers_are_applied(lora_handle, narrow):
    """A warper that leaves one candidate makes sampling equal greedy: it would not if the warper were ignored."""
    views = View(lora_handle, "u1"), View(lora_handle, BASE)
    combine = ContrastiveCombine(alpha=0.3)
    sampled = decode_ids(*views, combine, do_sample=True, seed=3, **{"temperature": 3.0, **narrow})
    assert sampled == decode_ids(*views, combine)


@pytest.mark.parametrize("separate_models", [False, True])
def test_rows_stop_at_their_own_eos(lora_handle, base_handle, separate_models):
    eos = lora_handle.tokenizer.eos_token_id
    seen_prompts = []

    def eos_for_prompt_1_at_step_2(logits_a, logits_b, state):
        seen_prompts.append(state.prompt_indices)
        assert len(state.sequences) == len(state.prompt_indices) == len(logits_a)
        scores = logits_a.clone()
        if state.step == 2:
            row = state.prompt_indices.index(1)
            scores[row] = float("-inf")
            scores[row, eos] = 0.0
        return scores

    amateur = View(base_handle) if separate_models else View(lora_handle, BASE)
    with rows_per_forward(lora_handle.model.get_base_model(), base_handle.model) as (rows, amateur_rows):
        stopped = decode_ids(View(lora_handle, "u1"), amateur, eos_for_prompt_1_at_step_2, batch_size=5)
    greedy = plain_greedy(lora_handle)
    assert stopped[1] == greedy[1][:2] + [eos]
    assert all(len(greedy[i]) == NEW_TOKENS and stopped[i] == greedy[i] for i in (0, 2, 3, 4))
    # The finished row leaves the batch and the KV cache(s) while the others go on; the cache=recompute test
    # below shows the pruned caches still line up with their rows.
    assert [sorted(prompts) for prompts in seen_prompts] == [[0, 1, 2, 3, 4]] * 3 + [[0, 2, 3, 4]] * (NEW_TOKENS - 3)
    if separate_models:
        assert rows == amateur_rows == [5] * 3 + [4] * (NEW_TOKENS - 3)
    else:
        assert rows == [10] * 3 + [8] * (NEW_TOKENS - 3) and amateur_rows == []


def test_decoding_ends_when_every_row_is_done(lora_handle):
    eos = lora_handle.tokenizer.eos_token_id
    calls = []

    def eos_everywhere_at_step_1(logits_a, logits_b, state):
        calls.append(state.step)
        scores = logits_a.clone()
        if state.step == 1:
            scores[:] = float("-inf")
            scores[:, eos] = 0.0
        return scores

    stopped = decode_ids(View(lora_handle, "u1"), View(lora_handle, BASE), eos_everywhere_at_step_1, batch_size=5)
    assert calls == [0, 1] and all(len(ids) == 2 and ids[-1] == eos for ids in stopped)


def test_contrastive_combine_formula():
    expert = torch.tensor([[0.6, 0.3, 0.07, 0.03]])
    amateur = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    scores = ContrastiveCombine(alpha=0.5, plausibility=0.1)(expert.log() + 2.0, amateur.log() - 1.0)
    # Plausible head: p_E >= 0.1 * 0.6 keeps tokens 0..2; they are renormalised by 0.97.
    expected = [math.log(0.6 / 0.97 + 1e-8) - 0.5 * math.log(0.1 + 1e-8),
                math.log(0.3 / 0.97 + 1e-8) - 0.5 * math.log(0.2 + 1e-8),
                math.log(0.07 / 0.97 + 1e-8) - 0.5 * math.log(0.3 + 1e-8),
                math.log(1e-8) - 0.5 * math.log(0.4 + 1e-8)]
    torch.testing.assert_close(scores, torch.tensor([expected]), atol=1e-4, rtol=1e-5)
    # The amateur can reorder the plausible head: with alpha 2 token 1 beats the expert's favourite.
    assert ContrastiveCombine(alpha=2.0)(expert.log(), torch.tensor([[0.9, 0.05, 0.03, 0.02]]).log()).argmax() == 1


def test_encoder_decoder_models_are_refused(tiny_seq2seq_lm):
    seq2seq = load_model(tiny_seq2seq_lm, device="cpu")
    with pytest.raises(InputError, match="encoder-decoder models are refused"):
        two_view_generate_ids(View(seq2seq), View(seq2seq), ["a"], first_view, progress=False)


def test_bad_views_are_refused(lora_handle, base_handle, tiny_causal_lm):
    with pytest.raises(InputError, match="different adapters"):
        decode_ids(View(lora_handle, "u1"), View(lora_handle, "u1"), first_view)
    with pytest.raises(InputError, match=r"no adapter named 'u9' \(loaded: u1, u2\)"):
        decode_ids(View(lora_handle, "u9"), View(lora_handle, BASE), first_view)
    with pytest.raises(InputError, match="no adapters loaded, but adapter 'u1' was asked for"):
        decode_ids(View(lora_handle, "u1"), View(base_handle, "u1"), first_view)
    other_vocabulary = load_model(tiny_causal_lm, device="cpu")
    other_vocabulary.tokenizer = build_tokenizer("causal", vocab_size=300)
    with pytest.raises(InputError, match="tokenizers differ"):
        decode_ids(View(lora_handle, "u1"), View(other_vocabulary), first_view)


@pytest.mark.realmodel
def test_default_model_first_view_equals_generate():
    """The packaged SmolLM2 (grouped-query attention, tied embeddings) with a random LoRA adapter."""
    handle = with_lora_adapters(load_model("default", device="cpu"), ["q_proj", "v_proj"])
    prompts = ["Write a headline about a new bridge.", "Name a colour."]
    expected = generate_ids(handle, prompts, max_new_tokens=8, progress=False)
    assert two_view_generate_ids(View(handle, "u1"), View(handle, BASE), prompts, first_view, max_new_tokens=8,
                                 progress=False) == expected


def run_bench(*args):
    return subprocess.run([sys.executable, "bench/bench_two_view.py", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_bench_script_small_run(tiny_causal_lm):
    done = run_bench("--model_name", tiny_causal_lm, "--max_new_tokens", 3, "--threads", 1)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["prompts"] == 16 and figures["threads"] == 1
    assert figures["time_ratio"] > 0 and figures["memory_ratio"] > 0
    # Plain generate: the prompt pass and 2 more steps over all 16 rows; two-view: over 32 rows at most.
    assert figures["plain_row_forwards"] == 3 * 16 and 0 < figures["two_view_row_forwards"] <= 3 * 32
    assert any(line.startswith("two_view:") for line in lines)


def test_bench_script_bad_input_is_one_line(tmp_path):
    done = run_bench("--repeats", 0)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --repeats, --max_new_tokens, --batch_size and --lora_rank must be at least 1"]
    done = run_bench("--model_name", tmp_path / "missing")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "missing" in errors[0] and "Traceback" not in done.stderr
