"""Named LoRA adapters on one base model, mixed-adapter batches, per-token scores, SFT and DPO (lm.adapters,
lm.train) on tiny random models."""
import logging
import math

import pytest
import torch

from data.errors import InputError
from lm import LoraOptions, load_model
from lm.adapters import BASE
from lm.train import TrainOptions, train_dpo, train_sft
from test_lm import causal, seq2seq  # noqa: F401  (fixtures: the tiny models loaded on CPU)

PROMPTS = [
    "Generate a headline for the following article.",
    "The reporter wrote about the new bridge and the city council celebrated the museum opening.",
    "Rate the review",
    "A young scientist studied rising food prices.",
    "Which category does this product review belong to?",
    "The quick brown fox jumps over the lazy dog.",
]
TARGETS = ["the new bridge", "a surprising result", "five", "the football match", "local elections", "x"]
RANDOM = LoraOptions(r=4, zero_init=False)     # a non-zero update, as after training
FAST = TrainOptions(epochs=3, learning_rate=3e-3, batch_size=4, logging_steps=1)


def sums(scores):
    return [score.sum_logprob for score in scores]


def with_users(handle, count=3):
    for user in range(count):
        handle.add_adapter(f"user_{user}", RANDOM)
    return handle


# ----------------------------------------------------------------------------- mixed-adapter batches

@pytest.mark.parametrize("model", ["causal", "seq2seq"])
def test_a_mixed_adapter_batch_equals_each_adapter_run_alone(model, request):
    handle = with_users(request.getfixturevalue(model))
    names = ["user_0", "user_1", None, "user_2", BASE, "user_1"]
    mixed = handle.score(PROMPTS, TARGETS, adapter_names=names, progress=False)
    alone = [handle.score([p], [t], adapter_names=[n], progress=False)[0] for p, t, n in zip(PROMPTS, TARGETS, names)]
    assert sums(mixed) == pytest.approx(sums(alone), rel=1e-4, abs=1e-3)   # padding: float round-off only
    for beams in (1, 2):
        texts = handle.generate(PROMPTS, max_new_tokens=6, num_beams=beams, adapter_names=names, progress=False)
        base = handle.generate(PROMPTS, max_new_tokens=6, num_beams=beams, progress=False)
        assert sum(a != b for a, b in zip(texts, base)) >= 3          # the adapted rows really are adapted
        assert texts == [handle.generate([p], max_new_tokens=6, num_beams=beams, adapter_names=[n], progress=False)[0]
                         for p, n in zip(PROMPTS, names)]
    # the adapters do differ from each other and from the base, so a shuffled mapping would be caught
    per_adapter = [sums(handle.score(PROMPTS[:1], TARGETS[:1], adapter_names=[n], progress=False))[0]
                   for n in ("user_0", "user_1", "user_2", BASE)]
    assert len({round(value, 3) for value in per_adapter}) == 4


def test_length_sorting_carries_each_rows_adapter(causal):
    """Prompts of very different lengths are reordered into batches; each keeps its own adapter."""
    handle = with_users(causal)
    names = ["user_2", "user_0", "user_1", BASE, "user_0", "user_2"]
    batched = handle.generate(PROMPTS, max_new_tokens=5, adapter_names=names, batch_size=4, progress=False)
    assert batched == [handle.generate([p], max_new_tokens=5, adapter_names=[n], progress=False)[0]
                       for p, n in zip(PROMPTS, names)]


def test_default_adapter_views_and_base(causal):
    base = sums(causal.score(PROMPTS, TARGETS, progress=False))
    with_users(causal, 2)
    assert sums(causal.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(base, abs=1e-5)   # no default
    view = causal.with_adapter("user_1")
    assert sums(view.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(
        sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_1"] * len(PROMPTS), progress=False)))
    assert causal.adapter is None and view.weights_id != causal.weights_id
    causal.activate_adapter("user_0")
    assert sums(causal.score(PROMPTS, TARGETS, progress=False)) != pytest.approx(base, abs=1e-3)
    causal.disable_adapters()
    assert sums(causal.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(base, abs=1e-5)


def test_unknown_or_duplicate_adapter_names_are_errors(causal):
    with pytest.raises(InputError, match="no adapters loaded"):
        causal.generate(PROMPTS[:1], adapter_names=["user_0"], progress=False)
    with_users(causal, 1)
    with pytest.raises(InputError, match="no adapter named 'usr_0'"):
        causal.score(PROMPTS[:1], TARGETS[:1], adapter_names=["usr_0"], progress=False)
    with pytest.raises(InputError, match="exists already"):
        causal.add_adapter("user_0")
    with pytest.raises(ValueError, match="2 adapter names for 1 prompts"):
        causal.generate(PROMPTS[:1], adapter_names=["user_0", BASE], progress=False)


# ----------------------------------------------------------------------------- save, load, delete, merge

def test_a_saved_adapter_loads_with_plain_peft_and_gives_the_same_logits(causal, tiny_causal_lm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with_users(causal, 2)
    folder = causal.save_adapter("user_1", tmp_path / "user_1")
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".md") == \
        ["adapter_config.json", "adapter_model.safetensors"]
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_causal_lm), str(folder)).eval()
    ids = torch.tensor([causal.tokenizer(PROMPTS[1])["input_ids"]])
    with torch.no_grad():
        expected = plain(ids).logits
        got = causal.model(ids, adapter_names=["user_1"]).logits
        other = causal.model(ids, adapter_names=["user_0"]).logits
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(other, expected, atol=1e-3)
    # and back into lm: as a named adapter, or as a model folder of its own
    fresh = load_model(tiny_causal_lm, device="cpu")
    fresh.load_adapter("again", folder)
    want = sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_1"] * 6, progress=False))
    assert sums(fresh.score(PROMPTS, TARGETS, adapter_names=["again"] * 6, progress=False)) == pytest.approx(want)
    assert sums(load_model(folder, device="cpu").score(PROMPTS, TARGETS, progress=False)) == pytest.approx(want)


def test_delete_unwraps_and_merge_only_when_asked(causal, tmp_path):
    from peft import PeftModel

    base = sums(causal.score(PROMPTS, TARGETS, progress=False))
    base_id = causal.weights_id
    with_users(causal, 2)
    adapted = sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_1"] * 6, progress=False))
    causal.delete_adapter("user_0")
    assert causal.adapters == ["user_1"] and isinstance(causal.model, PeftModel)
    with pytest.raises(InputError, match="without '.'"):
        causal.add_adapter("a.b")
    causal.merge_adapter("user_1")
    assert not isinstance(causal.model, PeftModel) and causal.adapters == []
    assert sums(causal.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(adapted, abs=1e-4)
    assert causal.weights_id != base_id      # merged weights never reuse outputs cached for the base
    causal.add_adapter("user_2")
    causal.delete_adapter("user_2")
    assert not isinstance(causal.model, PeftModel) and base != pytest.approx(adapted, abs=1e-3)


def test_save_merged_leaves_the_handle_as_it_was(causal, tmp_path):
    with_users(causal, 2)
    adapted = sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_0"] * 6, progress=False))
    from lm.adapters import save_merged

    save_merged(causal, "user_0", tmp_path / "merged")
    assert causal.adapters == ["user_0", "user_1"]
    merged = load_model(tmp_path / "merged", device="cpu")
    assert sums(merged.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(adapted, abs=1e-4)


# ----------------------------------------------------------------------------- per-token log-probabilities

@pytest.mark.parametrize("model", ["causal", "seq2seq"])
def test_per_token_logprobs_sum_to_the_sequence_score(model, request):
    handle = request.getfixturevalue(model)
    scores = handle.score(PROMPTS, TARGETS, batch_size=4, chat=False, progress=False)
    for prompt, target, score in zip(PROMPTS, TARGETS, scores):
        target_ids = handle.tokenizer(target, add_special_tokens=False)["input_ids"]
        assert score.num_tokens == len(target_ids) == len(score.token_logprobs)
        assert score.sum_logprob == pytest.approx(math.fsum(score.token_logprobs))
        assert score.mean_logprob == pytest.approx(score.sum_logprob / score.num_tokens)
        # token by token: log P(t_i | prompt, t_<i) from the target prefix's own score
        prefix = handle.score([prompt], [handle.tokenizer.decode(target_ids[:1])], chat=False, progress=False)[0]
        assert score.token_logprobs[0] == pytest.approx(prefix.token_logprobs[0], rel=1e-4, abs=1e-4)
        assert all(value < 0 for value in score.token_logprobs)


# ----------------------------------------------------------------------------- training

def test_sft_changes_only_the_named_adapter_and_a_fresh_adapter_does_not_stack(causal):
    base = sums(causal.score(PROMPTS, TARGETS, progress=False))
    causal.add_adapter("user_a", LoraOptions(r=4))
    causal.add_adapter("user_b", LoraOptions(r=4))
    before = {name: p.detach().clone() for name, p in causal.model.named_parameters()}
    metrics = train_sft(causal, PROMPTS, TARGETS, adapter="user_a", options=FAST)
    assert metrics["train_loss"] > 0
    changed = {name for name, p in causal.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(".user_a." in name for name in changed)
    assert any("lora_B.user_a" in name for name in changed)
    trained = sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_a"] * 6, progress=False))
    assert sum(trained) > sum(base) + 1           # the targets became likelier
    # the next user's fresh adapter starts from the base, not from user_a
    causal.add_adapter("user_c", LoraOptions(r=4))
    assert sums(causal.score(PROMPTS, TARGETS, adapter_names=["user_c"] * 6, progress=False)) == \
        pytest.approx(base, abs=1e-5)
    assert sums(causal.score(PROMPTS, TARGETS, progress=False)) == pytest.approx(base, abs=1e-5)


def test_sft_without_adapter_trains_every_weight_of_a_plain_model(seq2seq):
    before = {name: p.detach().clone() for name, p in seq2seq.model.named_parameters()}
    train_sft(seq2seq, PROMPTS, TARGETS, options=FAST)
    after = dict(seq2seq.model.named_parameters())
    assert sum(not torch.equal(before[name], after[name]) for name in before) > len(before) // 2
    assert not seq2seq.model.training
    seq2seq.add_adapter("user")
    with pytest.raises(InputError, match="name the adapter"):
        train_sft(seq2seq, PROMPTS, TARGETS, options=FAST)


CHOSEN = [" the new bridge", " a surprising result", " five", " the football match", " local elections", " yes"]
REJECTED = [" rising food prices", " the museum opening", " one", " a famous novel", " the weather", " no"]


def margins(handle, adapter):
    eos = handle.tokenizer.eos_token
    chosen = handle.score(PROMPTS, [c + eos for c in CHOSEN], chat=False, adapter_names=[adapter] * 6, progress=False)
    rejected = handle.score(PROMPTS, [r + eos for r in REJECTED], chat=False, adapter_names=[adapter] * 6,
                            progress=False)
    return [c.sum_logprob - r.sum_logprob for c, r in zip(chosen, rejected)]


def test_dpo_raises_the_chosen_minus_rejected_margin_of_the_named_adapter_only(causal):
    causal.add_adapter("user_a", LoraOptions(r=4))
    causal.add_adapter("user_b", LoraOptions(r=4))
    before = {name: p.detach().clone() for name, p in causal.model.named_parameters()}
    start = sum(margins(causal, "user_b"))
    train_dpo(causal, PROMPTS, CHOSEN, REJECTED, adapter="user_b", chat=False,
              options=TrainOptions(epochs=4, learning_rate=5e-3, batch_size=6, logging_steps=1))
    assert sum(margins(causal, "user_b")) > start + 1
    assert causal.adapters == ["user_a", "user_b"]           # TRL's reference copy is gone again
    changed = {name for name, p in causal.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(".user_b." in name for name in changed)


def test_one_warmed_up_step_changes_nothing_and_says_so(causal, caplog):
    """Linear warmup runs the first optimizer step at learning rate 0: a run of one step is a no-op, and warned."""
    causal.add_adapter("user", LoraOptions(r=4))
    before = {name: p.detach().clone() for name, p in causal.model.named_parameters()}
    one_step = TrainOptions(epochs=1, learning_rate=5e-3, batch_size=8, warmup_ratio=0.1)
    with caplog.at_level(logging.WARNING, logger="lm.train"):
        train_dpo(causal, PROMPTS, CHOSEN, REJECTED, adapter="user", chat=False, options=one_step)
    assert all(torch.equal(p, before[name]) for name, p in causal.model.named_parameters())
    assert "one optimizer step" in caplog.text
    caplog.clear()
    two_steps = TrainOptions(epochs=1, learning_rate=5e-3, batch_size=3, warmup_ratio=0.1)
    with caplog.at_level(logging.WARNING, logger="lm.train"):
        train_dpo(causal, PROMPTS, CHOSEN, REJECTED, adapter="user", chat=False, options=two_steps)
    assert any(not torch.equal(p, before[name]) for name, p in causal.model.named_parameters())
    assert "one optimizer step" not in caplog.text


def test_dpo_of_a_seq2seq_model_is_an_input_error(seq2seq):
    seq2seq.add_adapter("user")
    with pytest.raises(InputError, match="decoder-only"):
        train_dpo(seq2seq, PROMPTS, CHOSEN, REJECTED, adapter="user")


def test_dpo_reference_is_the_base_model_with_the_adapter_disabled(causal):
    """An adapter that already differs from the base: the first DPO loss compares it with the BASE model.

    With a copy of the adapter as reference (TRL's own choice) the first loss would be log 2.
    """
    torch.manual_seed(0)        # the random adapter (and so the size of the margin) does not depend on test order
    causal.add_adapter("user", LoraOptions(r=4, dropout=0.0, zero_init=False))
    policy, reference = margins(causal, "user")[:1], margins(causal, BASE)[:1]
    beta = 0.5
    expected = -torch.nn.functional.logsigmoid(torch.tensor(beta * (policy[0] - reference[0]))).item()
    assert abs(expected - math.log(2)) > 0.3
    # one step: Trainer's train_loss is the loss of that step, computed before the update
    metrics = train_dpo(causal, PROMPTS[:1], CHOSEN[:1], REJECTED[:1], adapter="user", beta=beta, chat=False,
                        options=TrainOptions(max_steps=1, batch_size=1, logging_steps=1))
    # TRL's fused log-prob head differs from a plain forward pass by up to ~2% of this loss (0.08 of 5.46 nats
    # with this seed); a reference copy of the adapter would give log 2 = 0.69, far outside
    assert metrics["train_loss"] == pytest.approx(expected, rel=0.03)
