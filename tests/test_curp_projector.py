"""CURP stage 2 and inference: soft tokens at the `<USR_EMB>` placeholders, frozen LLM, his_len from the checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from curp.projector import USER_TOKEN, insert_user_embeddings
from test_curp_codebook import write_lamp4


def test_projected_vector_j_lands_at_the_jth_placeholder_only():
    user = 99
    input_ids = torch.tensor([[5, user, 7, user, user, 8, 9],
                              [user, 1, 2, user, 3, user, 4]])
    embeddings = torch.randn(2, 7, 6)
    projected = torch.randn(2, 3, 6)
    out = insert_user_embeddings(embeddings, input_ids, user, projected)
    for row in range(2):
        positions = (input_ids[row] == user).nonzero().flatten().tolist()
        for j, position in enumerate(positions):
            assert torch.equal(out[row, position], projected[row, j])
        others = [p for p in range(7) if p not in positions]
        assert torch.equal(out[row, others], embeddings[row, others])


def test_wrong_number_of_placeholders_is_refused():
    with pytest.raises(ValueError, match="exactly 2"):
        insert_user_embeddings(torch.zeros(1, 3, 4), torch.tensor([[1, 99, 2]]), 99, torch.zeros(1, 2, 4))


@pytest.fixture
def stage1(tmp_path, tiny_encoder):
    from curp import encode, train_codebook

    questions, outputs = write_lamp4(tmp_path)
    output = tmp_path / "emb.safetensors"
    encode.main(["--task", "LaMP_4", "--data", str(questions), "--outputs", str(outputs), "--encoder",
                 str(tiny_encoder), "--output", str(output), "--device", "cpu"])
    train_codebook.main(["--embeddings", str(output), "--output_dir", str(tmp_path / "s1"), "--codebook_size", "8",
                         "--num_epochs", "1", "--group_size", "4"])
    return output, tmp_path / "s1"


def test_stage2_trains_only_the_projector_and_leaves_the_llm_bit_identical(stage1, tmp_path, tiny_causal_lm):
    from accelerate import Accelerator

    from curp.records import load_embeddings, matched_examples
    from curp.optim import OptimizerOptions
    from curp.stage1 import load_codebook
    from curp.stage2 import ProjectorOptions, train_projector
    from lm import load_model

    embeddings_path, codebook_dir = stage1
    embeddings = load_embeddings(embeddings_path)
    quantizer = load_codebook(codebook_dir)
    codebooks_before = quantizer.codebooks.clone()
    handle = load_model(str(tiny_causal_lm), device="cpu", backend="hf")
    before = {name: p.detach().clone() for name, p in handle.model.named_parameters()}
    torch.manual_seed(0)
    from curp.projector import MLPProjector
    initial = MLPProjector(32, 16, 32).state_dict()
    projector = train_projector(handle, quantizer, embeddings, matched_examples(embeddings, embeddings_path),
                                ProjectorOptions(his_len=3, hidden_dim=16, batch_size=2),
                                OptimizerOptions(learning_rate=1e-2, num_epochs=2), tmp_path / "s2", Accelerator(cpu=True), chat=True, extra={"model_name": "tiny"})
    after = dict(handle.model.named_parameters())
    for name, value in before.items():
        # Embedding matrices grew by the two new tokens; their old rows are untouched like every other weight.
        assert torch.equal(after[name][:len(value)], value), name
        assert not after[name].requires_grad
    assert torch.equal(quantizer.codebooks, codebooks_before)
    assert any(not torch.equal(initial[k], v) for k, v in projector.state_dict().items())
    state = torch.load(tmp_path / "s2" / "projector.pt", weights_only=True)
    assert state["his_len"] == 3 and state["steps"] == 6


def test_inference_reads_his_len_from_the_checkpoint_and_fills_every_placeholder(stage1, tmp_path, tiny_causal_lm,
                                                                                monkeypatch):
    from curp import inference, train_projector
    import curp.inference as inference_module

    embeddings_path, codebook_dir = stage1
    assert train_projector.main(["--embeddings", str(embeddings_path), "--codebook", str(codebook_dir),
                                 "--output_dir", str(tmp_path / "s2"), "--model_name", str(tiny_causal_lm),
                                 "--device", "cpu", "--his_len", "3", "--hidden_dim", "16"]) == 0
    seen, users_seen = [], []
    real = inference_module.generate_with_users

    def spy(model, tokenizer, projector, prompts, users, pad_id, user_id, *rest):
        users_seen.append(users)
        # Every input embedding the model gets: the projected user vector j at the j-th placeholder, else the token's.
        def check(module, args, kwargs):
            embeds = kwargs.get("inputs_embeds")
            if embeds is not None and embeds.shape[1] > 1:
                seen.append(embeds.detach().clone())
        hook = model.register_forward_pre_hook(check, with_kwargs=True)
        try:
            texts = real(model, tokenizer, projector, prompts, users, pad_id, user_id, *rest)
        finally:
            hook.remove()
        from lm.batching import pad_batch
        ids, _ = pad_batch(prompts, pad_id, "left")
        expected_users = projector(users)
        placeholders = ids == user_id
        assert placeholders.sum(1).tolist() == [3] * len(prompts)
        embedding = model.get_input_embeddings()(ids)
        assert torch.allclose(seen[-1][placeholders], expected_users.reshape(-1, expected_users.shape[-1]))
        assert torch.equal(seen[-1][~placeholders], embedding[~placeholders])
        return texts

    monkeypatch.setattr(inference_module, "generate_with_users", spy)
    out = tmp_path / "run"
    assert inference.main(["--embeddings", str(embeddings_path), "--codebook", str(codebook_dir),
                           "--projector", str(tmp_path / "s2"), "--output_dir", str(out), "--device", "cpu",
                           "--max_new_tokens", "4", "--batch_size", "4"]) == 0
    assert seen
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert all(p["text"].count(USER_TOKEN) == 3 for p in prompts)
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["task"] == "LaMP_4" and len(predictions["golds"]) == 6
    scores = json.loads((out / "scores.json").read_text())
    assert scores["num_examples"] == 6 and "rouge-1" in scores
    # The ablation gives example r the users of example r + 1.
    normal = torch.cat(users_seen)
    users_seen.clear()
    assert inference.main(["--embeddings", str(embeddings_path), "--codebook", str(codebook_dir),
                           "--projector", str(tmp_path / "s2"), "--output_dir", str(tmp_path / "rotated"),
                           "--device", "cpu", "--max_new_tokens", "4", "--batch_size", "6", "--rotate_users"]) == 0
    assert torch.equal(torch.cat(users_seen), normal.roll(-1, dims=0)) and not torch.equal(normal.roll(-1, 0), normal)
    # A rerun reuses every finished generation.
    monkeypatch.setattr(inference_module, "generate_with_users", lambda *a, **k: pytest.fail("regenerated"))
    assert inference.main(["--embeddings", str(embeddings_path), "--codebook", str(codebook_dir),
                           "--projector", str(tmp_path / "s2"), "--output_dir", str(out), "--device", "cpu",
                           "--max_new_tokens", "4", "--batch_size", "4"]) == 0


def test_alignx_records_give_jsonl_predictions(tmp_path, tiny_encoder, tiny_causal_lm):
    from curp import encode, inference, train_codebook, train_projector

    records = [{"prompt": f"What do you think of {topic}?", "chosen": f"I like {topic}.", "rejected": "No.",
                "User-Generated Content": [{"prompt": f"Post {i}", "comment": f"comment {i} on {topic}",
                                            "Preference Direction": [0.5]} for i in range(4)]}
               for topic in ["trains", "music", "cats", "rain"]]
    data = tmp_path / "alignx.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    emb = tmp_path / "a.safetensors"
    assert encode.main(["--task", "alignx", "--data", str(data), "--encoder", str(tiny_encoder),
                        "--output", str(emb), "--device", "cpu"]) == 0
    assert train_codebook.main(["--embeddings", str(emb), "--output_dir", str(tmp_path / "s1"),
                                "--codebook_size", "4", "--num_epochs", "1"]) == 0
    assert train_projector.main(["--embeddings", str(emb), "--codebook", str(tmp_path / "s1"), "--output_dir",
                                 str(tmp_path / "s2"), "--model_name", str(tiny_causal_lm), "--device", "cpu",
                                 "--his_len", "4", "--hidden_dim", "8"]) == 0
    assert inference.main(["--embeddings", str(emb), "--codebook", str(tmp_path / "s1"), "--projector",
                           str(tmp_path / "s2"), "--output_dir", str(tmp_path / "out"), "--device", "cpu",
                           "--max_new_tokens", "3"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"] and rows[2]["chosen"] == "I like cats."
    assert all(isinstance(r["generated"], str) for r in rows)
