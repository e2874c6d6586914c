"""CURP stage 0/1: balanced k-means, product quantization, the embeddings file, codebook training and resume."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

from curp.codebook import ProductQuantizer, stage1_loss, LossWeights, usage_penalty
from curp.kmeans import balanced_kmeans, balanced_kmeans_reference


def blobs(per_cluster: int, centres: list[tuple[float, float]]) -> torch.Tensor:
    """Hand-made points: ``per_cluster`` points on a small ring around each centre."""
    angles = torch.arange(per_cluster, dtype=torch.float64) * (2 * torch.pi / per_cluster)
    ring = torch.stack([angles.cos(), angles.sin()], 1) * 0.1
    return torch.cat([ring + torch.tensor(centre, dtype=torch.float64) for centre in centres])


def test_balanced_kmeans_fills_every_cluster_to_capacity_and_converges():
    centres = [(0, 0), (5, 0), (0, 5), (5, 5)]
    points = blobs(5, centres)                       # N = 20, K = 4 -> capacity 5
    result = balanced_kmeans(points, 4, max_iterations=50, generator=torch.Generator().manual_seed(1))
    assert result.converged and result.iterations < 50
    assert torch.bincount(result.assignments, minlength=4).tolist() == [5, 5, 5, 5]
    # Each cluster is exactly one blob, its centroid the blob's centre.
    for cluster in range(4):
        members = (result.assignments == cluster).nonzero().flatten()
        assert len(set((members // 5).tolist())) == 1
    assert sorted(map(tuple, result.centroids.round(decimals=6).tolist())) == sorted(map(tuple, map(
        lambda c: (float(c[0]), float(c[1])), centres)))


def test_balanced_kmeans_capacity_beats_nearest_assignment():
    # 8 points near (0, 0) and 2 near (9, 9), K = 2: plain k-means would split 8/2, the balanced one 5/5.
    points = torch.cat([blobs(8, [(0, 0)]), blobs(2, [(9, 9)])])
    result = balanced_kmeans(points, 2, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(result.assignments).tolist() == [5, 5]


def test_leftovers_join_their_nearest_centroid():
    points = blobs(5, [(0, 0), (5, 0), (0, 5)])[:14]          # N = 14, K = 3: capacity 4, 2 leftovers
    result = balanced_kmeans(points, 3, generator=torch.Generator().manual_seed(2))
    sizes = torch.bincount(result.assignments, minlength=3)
    assert sizes.sum() == 14 and sizes.min() >= 4


@pytest.mark.parametrize("num_clusters", [7, 20, 60, 150])
def test_vectorized_equals_the_per_cluster_loop(num_clusters):
    points = torch.randn(600, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fast = balanced_kmeans(points, num_clusters, generator=torch.Generator().manual_seed(3))
    slow = balanced_kmeans_reference(points, num_clusters, generator=torch.Generator().manual_seed(3))
    assert fast.iterations == slow.iterations and fast.converged
    assert torch.equal(fast.assignments, slow.assignments)
    assert torch.allclose(fast.centroids, slow.centroids)


def test_pq_quantization_equals_brute_force_nearest_neighbour():
    torch.manual_seed(0)
    quantizer = ProductQuantizer(embedding_dim=6, num_subspaces=3, codebook_size=4)
    # Every combination of code words is a candidate vector of the full space.
    combos = list(itertools.product(range(4), repeat=3))
    full = torch.stack([torch.cat([quantizer.codebooks[m, k] for m, k in enumerate(c)]) for c in combos]).detach()
    embeddings = torch.randn(50, 6)
    quantized, indices = quantizer(embeddings)
    nearest = torch.cdist(embeddings, full).argmin(1)
    assert torch.allclose(quantized, full[nearest])
    assert indices.tolist() == [list(combos[i]) for i in nearest.tolist()]
    assert quantizer(embeddings.view(5, 10, 6))[1].shape == (5, 10, 3)   # leading dimensions are kept


def test_stage1_loss_gives_gradient_to_used_code_words_only():
    torch.manual_seed(0)
    quantizer = ProductQuantizer(4, 2, 8)
    embeddings = torch.randn(16, 4)
    loss, parts, collapsed = stage1_loss(quantizer, embeddings, LossWeights(1.0, 0.0, 1.0), 1.0)
    loss.backward()
    _, indices = quantizer(embeddings)
    used = torch.zeros(2, 8, dtype=torch.bool)
    for m in range(2):
        used[m, indices[:, m]] = True
    grad_norms = quantizer.codebooks.grad.norm(dim=-1)
    assert not collapsed and (grad_norms[used] > 0).all() and (grad_norms[~used] == 0).all()
    assert set(parts) == {"codebook", "diversity", "usage"}


def test_usage_penalty_is_zero_for_perfect_usage_and_high_for_collapse():
    spread = torch.tensor([[k, (k + 1) % 4] for k in range(4)])      # every code, every tuple distinct
    assert usage_penalty(spread, 4) == pytest.approx(0.0, abs=1e-6)
    assert usage_penalty(torch.zeros(4, 2, dtype=torch.long), 4) > 0.7


def write_lamp4(folder, users=6, items=12):
    """A LaMP_4 questions/outputs pair written by hand from the LaMP schema."""
    words = ["harbour", "market", "tram", "bridge", "school", "museum", "river", "festival"]
    questions, golds = [], []
    for user in range(users):
        profile = [{"id": f"{user}-{i}", "title": f"{words[(user + i) % 8].title()} news {i}",
                    "text": f"The {words[(user * i) % 8]} opened near the {words[i % 8]} on day {i}."}
                   for i in range(items)]
        questions.append({"id": f"q{user}", "user_id": f"u{user}", "profile": profile,
                          "input": f"Generate a headline for the following article: The {words[user % 8]} closed."})
        golds.append({"id": f"q{user}", "output": f"{words[user % 8].title()} closes"})
    (folder / "questions.json").write_text(json.dumps(questions))
    (folder / "outputs.json").write_text(json.dumps({"task": "LaMP_4", "golds": golds}))
    return folder / "questions.json", folder / "outputs.json"


@pytest.fixture
def lamp4_embeddings(tmp_path, tiny_encoder):
    from curp import encode

    questions, outputs = write_lamp4(tmp_path)
    output = tmp_path / "emb.safetensors"
    assert encode.main(["--task", "LaMP_4", "--data", str(questions), "--outputs", str(outputs),
                        "--encoder", str(tiny_encoder), "--output", str(output), "--device", "cpu"]) == 0
    return output


def test_encode_writes_the_file_the_next_stage_reads(lamp4_embeddings):
    from curp.records import load_embeddings, matched_examples

    embeddings = load_embeddings(lamp4_embeddings)
    assert embeddings.dim == 32 and embeddings.ids == [f"q{u}" for u in range(6)]
    assert embeddings.offsets.tolist() == list(range(0, 73, 12))
    examples = matched_examples(embeddings, lamp4_embeddings)
    assert examples[1].history[0] == "Market news 0 The harbour opened near the harbour on day 0."
    assert embeddings.history(1).shape == (12, 32)


def test_bad_embeddings_file_is_one_line_error(tmp_path):
    from curp.records import load_embeddings
    from data.errors import InputError

    bad = tmp_path / "bare.pt"
    torch.save(torch.zeros(3, 4), bad)          # CURP_code's bare tensor: not our format
    with pytest.raises(InputError, match="bare.pt"):
        load_embeddings(bad)


def train(embeddings, output_dir, *extra):
    from curp import train_codebook

    return train_codebook.main(["--embeddings", str(embeddings), "--output_dir", str(output_dir),
                                "--codebook_size", "8", "--num_epochs", "3", "--batch_size", "2",
                                "--group_size", "4", "--save_steps", "2", *extra])


def test_codebook_training_writes_codebook_and_usage_report(lamp4_embeddings, tmp_path):
    assert train(lamp4_embeddings, tmp_path / "s1") == 0
    report = json.loads((tmp_path / "s1" / "usage.json").read_text())
    assert report["num_embeddings"] == 72 and len(report["subspaces"]) == 2
    assert all(1 <= s["codes_used"] <= 8 and sum(s["counts"]) == 72 for s in report["subspaces"])
    assert (tmp_path / "s1" / "usage.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(tmp_path / "s1" / "codebook.pt", weights_only=True)
    assert state["codebooks"].shape == (2, 8, 16) and state["steps"] == 3 * 9     # 72 embeddings = 18 groups of 4, 2 groups a step


def test_stopped_stage1_resumes_to_the_uninterrupted_result(lamp4_embeddings, tmp_path, monkeypatch):
    import curp.stage1 as stage1

    assert train(lamp4_embeddings, tmp_path / "whole") == 0
    calls = {"n": 0}
    real_loss = stage1.stage1_loss

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(stage1, "stage1_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(lamp4_embeddings, tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "codebook.pt").exists()
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["step"] == 6
    monkeypatch.setattr(stage1, "stage1_loss", real_loss)
    assert train(lamp4_embeddings, tmp_path / "stopped") == 0
    whole = torch.load(tmp_path / "whole" / "codebook.pt", weights_only=True)["codebooks"]
    resumed = torch.load(tmp_path / "stopped" / "codebook.pt", weights_only=True)["codebooks"]
    assert torch.equal(whole, resumed)
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["step"] == 27


def test_codebook_size_larger_than_data_is_input_error(lamp4_embeddings, tmp_path, capsys):
    from curp import train_codebook
    from data.cli import run

    code = run(train_codebook.main, ["--embeddings", str(lamp4_embeddings), "--output_dir", str(tmp_path / "x"),
                                     "--codebook_size", "500"])
    assert code == 2 and "--codebook_size 500" in capsys.readouterr().err


def test_history_comes_from_the_registry_document_and_max_items_cuts_it(tmp_path):
    from curp.records import SourceOptions, load_source
    from data.tasks import get_task

    questions, outputs = write_lamp4(tmp_path)
    source = SourceOptions(data=str(questions), task="lamp4", outputs=str(outputs), max_items=3).resolved()
    examples = load_source(source)
    assert source.task == "LaMP_4" and [len(e.history) for e in examples] == [3] * 6
    profile = json.loads(questions.read_text())[2]["profile"]
    assert examples[2].history == [get_task("LaMP_4").document(item) for item in profile[:3]]
    assert examples[2].answer == "Tram closes" and examples[2].question.endswith("The tram closed.")
