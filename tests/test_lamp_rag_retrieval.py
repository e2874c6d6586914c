"""lamp_rag.retrieval rankers (BM25 bit-identical to rank_bm25, dense, recency, random) and the
rank_profiles / merge_with_rank command lines."""
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from data.cli import run
from data.errors import InputError
from data.loaders import load_examples
from data.records import Example
from data.tasks import get_task, list_tasks
from lamp_rag import merge_with_rank, rank_profiles
from lamp_rag.retrieval import (DENSE_INDEXES, RetrievalOptions, bm25_order, bm25_scores, dense_orders,
                                dense_scores, rank_examples, rank_indices, recency_order, select_items)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "sample"


def sample_questions(spec) -> Path:
    name = "dev_questions.json" if spec.benchmark == "LaMP" else "val.json"
    return SAMPLE / spec.name / name


def reference_scores(query: str, corpus: list[str]) -> np.ndarray:
    return BM25Okapi([document.split() for document in corpus]).get_scores(query.split())


# ----------------------------------------------------------------------------- BM25

def random_texts(seed: int, count: int):
    """Adversarial whitespace-token texts: common words (negative idf), repeats, Unicode spaces, surrogates."""
    rng = random.Random(seed)
    words = ["the", "the", "a", "of", "Zed", "zed", "zed,", "é", "ü-x", "\ud800s", "q\x1cr"]
    spaces = [" ", " ", " ", "\t", "\n", "\u3000", "\xa0", "\x1c", "  "]

    def text(length: int) -> str:
        return "".join(rng.choice(words) + rng.choice(spaces) for _ in range(length))

    queries, corpora = [], []
    for _ in range(count):
        corpora.append([text(rng.randint(0, 25)) for _ in range(rng.randint(1, 15))])
        queries.append(text(rng.randint(1, 12)))
    return queries, corpora


def test_bm25_scores_are_bit_identical_to_rank_bm25():
    queries, corpora = random_texts(0, 300)
    queries += ["the the the zed", "nothing in common", "", "   "]
    corpora += [corpora[0]] * 4                  # several questions asking one corpus
    repeated = negative_idf = 0
    for query, corpus, scores in zip(queries, corpora, bm25_scores(queries, corpora)):
        reference = reference_scores(query, corpus)
        assert np.array_equal(scores, reference), (query, corpus)
        assert np.array_equal(bm25_order(scores), np.argsort(reference)[::-1])
        tokens = query.split()
        repeated += len(tokens) != len(set(tokens))
        negative_idf += any(sum(t in d.split() for d in corpus) > len(corpus) / 2 for t in tokens)
    assert repeated > 50 and negative_idf > 50          # the interesting cases were exercised


def test_bm25_in_worker_processes_equals_one_process(monkeypatch, worker_pools):
    from lamp_rag import retrieval

    queries, corpora = random_texts(1, 120)
    queries, corpora = queries + ["the zed", "x"], corpora + [corpora[3], []]   # a shared and an empty corpus
    serial = bm25_scores(queries, corpora, workers=1)
    monkeypatch.setattr(retrieval, "PARALLEL_MIN_CHUNKS", 2)
    monkeypatch.setattr(retrieval, "CHUNK_CORPORA", 5)
    parallel_scores = bm25_scores(queries, corpora, workers=2)
    assert len(worker_pools) == 1                            # a worker pool ran
    assert retrieval._WORK is None                           # the inherited texts were released
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel_scores))
    assert len(parallel_scores[-1]) == 0


@pytest.mark.parametrize("ascii_kernel", [True, False], ids=["ascii_kernel", "utf8_kernel"])
def test_arrow_tokenization_splits_like_str_split(ascii_kernel):
    from lamp_rag.retrieval import _split_whitespace

    chars = [chr(i) for i in range(128) if not ascii_kernel or chr(i) not in "\x1c\x1d\x1e\x1f"]
    if not ascii_kernel:
        chars += [c for c in map(chr, range(128, 0x3001)) if c.isspace()] + ["é", "\u200b", "\ud800"]
    texts = [f"x{c}y{c}{c}z{c} w" for c in chars]
    tokens = _split_whitespace(texts, ascii_kernel)
    split = [[t.decode("utf-8", "surrogatepass") for t in tokens[i].values.view("binary").to_pylist()]
             for i in range(len(texts))]
    assert split == [text.split() for text in texts]


def test_bm25_edge_cases():
    scores = bm25_scores(["a b", "a", "", "x"], [[], ["", "  \n"], ["a b", "b"], ["x y", "x y", "z"]])
    assert [len(s) for s in scores] == [0, 2, 2, 3]
    assert not scores[1].any() and not scores[2].any()           # no tokens / empty query: all zero
    assert np.array_equal(scores[3], reference_scores("x", ["x y", "x y", "z"]))
    assert bm25_order(scores[3]).tolist() == np.argsort(scores[3])[::-1].tolist()   # ties: reversed argsort


@pytest.mark.parametrize("spec", list_tasks(), ids=lambda spec: spec.name)
def test_bm25_ranking_on_the_sample_equals_rank_bm25(spec):
    examples = load_examples(sample_questions(spec), task=spec.name)
    rankings = rank_examples(spec, examples, "bm25", use_date=spec.date_field is not None, progress=False)
    for example, ranking in zip(examples, rankings):
        corpus = [spec.document(item, use_date=spec.date_field is not None) for item in example.profile]
        order = np.argsort(reference_scores(spec.query(example.input), corpus))[::-1]
        assert ranking == [example.profile[i]["id"] for i in order]


# ----------------------------------------------------------------------------- dense

class CountingEncoder:
    """Wraps an encoder and records what it is asked to encode."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, []

    def encode(self, texts, **options):
        self.calls.append(list(texts))
        return self.encoder.encode(texts, **options)


def test_dense_ranker_is_an_unnormalized_dot_product_encoding_each_text_once(tiny_encoder):
    import torch

    from lm import load_encoder

    encoder = load_encoder(str(tiny_encoder), device="cpu")
    counting = CountingEncoder(encoder)
    queries = ["red apples", "green pears", "red apples"]
    corpora = [["apples are red", "pears", "apples are red"], ["pears are green", "red apples"], ["pears"]]
    scores = dense_scores(queries, corpora, counting, batch_size=2)
    distinct = {"red apples", "green pears", "apples are red", "pears", "pears are green"}
    assert len(counting.calls) == 1 and sorted(counting.calls[0]) == sorted(distinct)
    for query, corpus, result in zip(queries, corpora, scores):
        vectors = torch.stack([encoder.encode([text])[0] for text in corpus])
        expected = vectors @ encoder.encode([query])[0]
        assert np.allclose(result, expected.numpy(), atol=1e-5)
    assert scores[0][0] == scores[0][2]                           # equal texts, equal scores ...
    spec = get_task("LaMP_4")
    examples = [Example(id="q", input=f"Generate a headline for the following article: {queries[0]}",
                        profile=[{"id": str(i), "title": "", "text": text} for i, text in enumerate(corpora[0])])]
    ranking = rank_examples(spec, examples, "contriever", encoder=encoder, progress=False)[0]
    assert ranking.index("0") < ranking.index("2")                # ... and ties keep profile order


class TableEncoder:
    """Hand-made embeddings: each text's vector is looked up in a table."""

    def __init__(self, table: dict):
        self.table = table

    def encode(self, texts, **options):
        import torch

        return torch.tensor([self.table[text] for text in texts], dtype=torch.float32)


def test_both_dense_indexes_break_exact_ties_by_profile_order():
    # Small integers: every summation order gives the same exact float32 scores, so ties are real ties.
    table = {"q": [1, 2, 0], "a": [2, 0, 5], "b": [0, 1, 9], "c": [2, 0, 0], "d": [4, -1, 3], "e": [0, 3, 0],
             "p": [0, 0, 1]}
    # scores with q: a 2, b 2, c 2, d 2, e 6, p 0; "b" repeated, so two profiles share no row layout
    corpora = [["a", "b", "c", "e", "d", "b", "p"], ["p", "d", "c", "b", "a"], [], ["p"]]
    queries = ["q", "q", "q", "q"]
    expected = [[3, 0, 1, 2, 4, 5, 6], [1, 2, 3, 4, 0], [], [0]]
    for index in DENSE_INDEXES:
        orders = dense_orders(queries, corpora, TableEncoder(table), dense_index=index)
        assert [order.tolist() for order in orders] == expected, index


def test_faiss_and_torch_rank_questions_sharing_a_profile_alike():
    import torch

    generator = torch.Generator().manual_seed(0)
    texts = [f"t{i}" for i in range(60)]
    table = dict(zip(texts, torch.randn(60, 16, generator=generator).tolist()))
    # 30 questions on 3 profiles: faiss searches each profile's questions in one call (BLAS from 20 up)
    queries = texts[:30]
    corpora = [texts[30 + 10 * (i % 3):40 + 10 * (i % 3)] + ["t0"] for i in range(30)]
    torch_orders, faiss_orders = (dense_orders(queries, corpora, TableEncoder(table), dense_index=index)
                                  for index in ("torch", "faiss"))
    assert all(np.array_equal(a, b) for a, b in zip(torch_orders, faiss_orders))


@pytest.mark.parametrize("spec", list_tasks(), ids=lambda spec: spec.name)
def test_faiss_rankings_equal_torch_rankings_on_the_sample(spec, tiny_encoder):
    from lm import load_encoder

    encoder = load_encoder(str(tiny_encoder), device="cpu")
    examples = load_examples(sample_questions(spec), task=spec.name)
    rankings = {index: rank_examples(spec, examples, "contriever", encoder=encoder, progress=False,
                                     dense_index=index) for index in DENSE_INDEXES}
    assert rankings["faiss"] == rankings["torch"]


@pytest.mark.realmodel
def test_faiss_rankings_equal_torch_rankings_with_the_default_encoder(default_encoder):
    spec = get_task("LaMP_4")
    examples = load_examples(sample_questions(spec), task=spec.name)
    rankings = {index: rank_examples(spec, examples, "contriever", encoder=default_encoder, progress=False,
                                     dense_index=index) for index in DENSE_INDEXES}
    assert rankings["faiss"] == rankings["torch"]


@pytest.fixture
def faiss_indexes(monkeypatch):
    """Every faiss IndexFlatIP made from now on, with the number of vectors added to it."""
    import faiss

    made = []

    class Recorded(faiss.IndexFlatIP):
        def add(self, vectors):
            made.append(len(vectors))
            return super().add(vectors)

    monkeypatch.setattr(faiss, "IndexFlatIP", Recorded)
    return made


def test_the_faiss_index_is_used_by_default_and_only_when_chosen(tiny_encoder, faiss_indexes, tmp_path):
    from lm import load_encoder

    spec = get_task("LaMP_4")
    examples = load_examples(sample_questions(spec), task=spec.name)
    encoder = load_encoder(str(tiny_encoder), device="cpu")
    rank_indices(spec, examples, "contriever", encoder=encoder, progress=False, dense_index="torch")
    assert faiss_indexes == []
    rank_indices(spec, examples, "contriever", encoder=encoder, progress=False)
    profiles = dict.fromkeys(tuple(spec.document(item) for item in e.profile) for e in examples)
    assert faiss_indexes == [len(set(profile)) for profile in profiles]   # one index per distinct profile
    # the option reaches the index through RetrievalOptions and rank_profiles' --dense_index
    faiss_indexes.clear()
    for index, found in (("torch", 0), ("faiss", len(examples))):
        options = RetrievalOptions(use_profile=True, retriever="contriever", num_retrieved=2, dense_index=index)
        options.retrieve(spec, examples, load_encoder=lambda name: encoder)
        assert len(faiss_indexes) == found
        faiss_indexes.clear()
        assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", tiny_encoder,
                    "--input_data_addr", sample_questions(spec), "--dense_index", index,
                    "--output_ranking_addr", tmp_path / f"{index}.json") == 0
        assert len(faiss_indexes) == found
        faiss_indexes.clear()


def test_flat_ip_index_moves_to_the_gpu_only_when_faiss_gpu_sees_one(monkeypatch):
    import faiss

    from lamp_rag import retrieval

    moved = []
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda resources, device, index: moved.append(device) or index,
                        raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    documents = np.eye(4, dtype=np.float32)
    try:
        for gpus, expected in ((0, []), (1, [0])):
            monkeypatch.setattr(faiss, "get_num_gpus", lambda: gpus)
            retrieval._gpu_resources.cache_clear()
            index = retrieval.flat_ip_index(documents)
            assert moved == expected and index.ntotal == 4
        retrieval.flat_ip_index(np.ones((retrieval.GPU_MAX_K + 1, 4), np.float32))   # beyond GPU k-selection
        assert moved == [0]
    finally:
        retrieval._gpu_resources.cache_clear()   # the next test sees the real faiss again


# ----------------------------------------------------------------------------- recency and random

def test_recency_orders_by_date_tuple_newest_first():
    spec = get_task("LaMP_4")
    dates = ["2019-03-04", "2020", "2019-12-01", "2019-03-04", "2018-07-30"]
    example = Example(id="q", input="x", profile=[{"id": str(i), "title": "t", "text": "x", "date": d}
                                                  for i, d in enumerate(dates)])
    # (2020,) > (2019, 12, 1) > (2019, 3, 4) twice (the later item first) > (2018, 7, 30)
    assert recency_order(spec, example) == [1, 2, 3, 0, 4]
    years = get_task("LongLaMP_2")
    example = Example(id="q", input="x", profile=[{"id": str(i), "title": "t", "abstract": "a", "year": y}
                                                  for i, y in enumerate([2001, "1999", 2003])])
    assert recency_order(years, example) == [2, 0, 1]


def test_recency_without_dates_treats_the_last_item_as_newest():
    undated = get_task("LongLaMP_4")                            # the registry has no date field
    example = Example(id="q", input="x", profile=[{"id": str(i), "summary": "s", "content": "c"} for i in range(4)])
    assert recency_order(undated, example) == [3, 2, 1, 0]
    spec = get_task("LaMP_4")
    mixed = Example(id="q", input="x", profile=[{"id": "a", "title": "t", "text": "x"},
                                                {"id": "b", "title": "t", "text": "x", "date": "2001-01-01"},
                                                {"id": "c", "title": "t", "text": "x"}])
    assert [mixed.profile[i]["id"] for i in recency_order(spec, mixed)] == ["b", "c", "a"]


def test_a_bad_date_is_one_line_input_error():
    spec = get_task("LaMP_4")
    example = Example(id="q7", input="x", profile=[{"id": "p1", "title": "t", "text": "x", "date": "May 2019"}])
    with pytest.raises(InputError) as err:
        recency_order(spec, example)
    assert "q7" in str(err.value) and "'p1'" in str(err.value) and "'date'" in str(err.value)
    assert "\n" not in str(err.value)


def test_random_samples_without_replacement_seeded_per_example():
    spec = get_task("LaMP_4")
    examples = load_examples(sample_questions(spec), task=spec.name)
    full = select_items(spec, examples, 1000, "random", seed=3, progress=False)
    for example, items in zip(examples, full):
        assert sorted(item["id"] for item in items) == sorted(item["id"] for item in example.profile)
    top3 = select_items(spec, examples, 3, "random", seed=3, progress=False)
    assert all(len({item["id"] for item in items}) == 3 for items in top3)
    assert [items[:3] for items in full] == top3
    assert select_items(spec, examples[5:6], 3, "random", seed=3, progress=False) == top3[5:6]   # batch-free
    assert select_items(spec, examples, 3, "random", seed=4, progress=False) != top3


def test_select_items_takes_the_ranking_prefix_or_the_ranked_profile():
    spec = get_task("LaMP_5")
    examples = load_examples(sample_questions(spec), task=spec.name)
    rankings = rank_examples(spec, examples, "bm25", progress=False)
    selected = select_items(spec, examples, 2, "bm25", progress=False)
    assert [[item["id"] for item in items] for items in selected] == [ranking[:2] for ranking in rankings]
    ranked = select_items(spec, examples, 2, "bm25", is_ranked=True)
    assert all(items == example.profile[:2] for items, example in zip(ranked, examples))


# ----------------------------------------------------------------------------- command lines

def rank(*argv) -> int:
    return run(rank_profiles.main, [str(a) for a in argv])


def merge(*argv) -> int:
    return run(merge_with_rank.main, [str(a) for a in argv])


@pytest.mark.parametrize("spec", list_tasks(), ids=lambda spec: spec.name)
def test_rank_profiles_writes_every_tasks_ranking_and_config(spec, tmp_path, capsys):
    out = tmp_path / "rankings" / "bm25.json"
    assert rank("--task", spec.name, "--ranker", "bm25", "--input_data_addr", sample_questions(spec),
                "--output_ranking_addr", out) == 0
    ranking = json.loads(out.read_text())
    examples = load_examples(sample_questions(spec), task=spec.name)
    assert list(ranking) == [example.id for example in examples]
    assert all(sorted(ranking[e.id]) == sorted(item["id"] for item in e.profile) for e in examples)
    assert json.loads((tmp_path / "rankings" / "bm25.json.config.json").read_text())["args"]["ranker"] == "bm25"
    assert str(out) in capsys.readouterr().out


def test_train_and_dev_rankings_in_one_folder_keep_their_own_provenance(tmp_path):
    for split in ("train", "dev"):
        assert rank("--task", "LaMP_4", "--ranker", "bm25", "--input_data_addr", SAMPLE / "LaMP_4" /
                    f"{split}_questions.json", "--output_ranking_addr", tmp_path / f"{split}.json") == 0
    for split in ("train", "dev"):
        config = json.loads((tmp_path / f"{split}.json.config.json").read_text())
        assert config["args"]["input_data_addr"].endswith(f"{split}_questions.json")
        assert config["output"] == str(tmp_path / f"{split}.json")
    assert not (tmp_path / "config.json").exists()


DATED_ITEMS = [{"id": "old", "title": "markets", "text": "stocks fell", "date": "2010-01-01"},
               {"id": "match", "title": "weather", "text": "rain all day", "date": "2019-03-04"},
               {"id": "other", "title": "sports", "text": "team won", "date": "2012-05-06"},
               {"id": "last", "title": "music", "text": "new album", "date": "2011-02-03"}]


def dated_question() -> dict:
    """A LaMP_4 question whose article names only a date: BM25 finds an item only through ' date: ...'."""
    return {"id": "q1", "input": "Generate a headline for the following article: report of 2019-03-04",
            "profile": DATED_ITEMS}


def test_use_date_appends_dates_to_the_documents(tmp_path):
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([dated_question()]))
    orders = {}
    for extra in ([], ["--use_date"]):
        out = tmp_path / f"ranking{len(extra)}.json"
        assert rank("--task", "LaMP_4", "--ranker", "bm25", "--input_data_addr", questions,
                    "--output_ranking_addr", out, *extra) == 0
        orders[bool(extra)] = json.loads(out.read_text())["q1"]
    assert orders[True][0] == "match" and orders[False][0] == "last"    # no match at all: reversed argsort
    # The same flag of evaluate_llm / train_llm (RetrievalOptions) reaches the ranker too.
    example = Example(id="q1", input=dated_question()["input"], target=None, profile=DATED_ITEMS)
    dated = RetrievalOptions(use_profile=True, num_retrieved=1, use_date=True)
    assert dated.retrieve(get_task("LaMP_4"), [example]) == [[DATED_ITEMS[1]]]
    assert RetrievalOptions(use_profile=True, num_retrieved=1).retrieve(get_task("LaMP_4"), [example]) == \
        [[DATED_ITEMS[3]]]


def test_recency_contriever_mixes_the_ranking_with_the_newest_items(tiny_encoder):
    spec = get_task("LaMP_4")
    example = Example(id="q1", input=dated_question()["input"], target=None, profile=DATED_ITEMS)
    # is_ranked: the first k/2 items of the given order, then the k/2 newest (here "match", then "other").
    assert [i["id"] for i in select_items(spec, [example], 4, "recency_contriever", is_ranked=True)[0]] == \
        ["old", "match", "match", "other"]
    assert [i["id"] for i in select_items(spec, [example], 3, "recency_contriever", is_ranked=True)[0]] == \
        ["old", "match"]
    from lm import load_encoder

    encoder = load_encoder(tiny_encoder)
    dense = rank_examples(spec, [example], "contriever", encoder=encoder, progress=False)[0]
    mixed = select_items(spec, [example], 4, "recency_contriever", encoder=encoder, progress=False)[0]
    assert [i["id"] for i in mixed] == dense[:2] + ["match", "other"]


def test_rank_profiles_uses_the_contriever_checkpoint(tiny_encoder, tmp_path):
    from lm import load_encoder

    spec = get_task("LaMP_4")
    questions = sample_questions(spec)
    out = tmp_path / "contriever.json"
    assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", tiny_encoder,
                "--input_data_addr", questions, "--output_ranking_addr", out) == 0
    examples = load_examples(questions, task=spec.name)
    expected = rank_examples(spec, examples, "contriever", encoder=load_encoder(tiny_encoder), progress=False)
    assert json.loads(out.read_text()) == {example.id: ranking for example, ranking in zip(examples, expected)}


def hf_cache_with(folder: Path, cache: Path, repo_id: str) -> Path:
    """A Hugging Face hub cache holding ``folder``'s files as the snapshot of ``repo_id``."""
    import shutil

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return cache


def test_contriever_hub_id_loads_from_the_local_hf_cache(tiny_encoder, tmp_path, capsys):
    cache = hf_cache_with(tiny_encoder, tmp_path / "hf_cache", "facebook/contriever")
    questions = sample_questions(get_task("LaMP_4"))
    by_id, by_folder = tmp_path / "by_id.json", tmp_path / "by_folder.json"
    assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", "facebook/contriever",
                "--cache_dir", cache, "--input_data_addr", questions, "--output_ranking_addr", by_id) == 0
    assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", tiny_encoder,
                "--input_data_addr", questions, "--output_ranking_addr", by_folder) == 0
    assert json.loads(by_id.read_text()) == json.loads(by_folder.read_text())
    capsys.readouterr()
    # Not in the cache that is searched: one line naming the way to allow a download.
    assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", "facebook/contriever",
                "--cache_dir", tmp_path / "empty_cache", "--input_data_addr", questions,
                "--output_ranking_addr", tmp_path / "none.json") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow_download" in err and not (tmp_path / "none.json").exists()


def test_allow_download_reaches_the_encoder_loader(monkeypatch, tmp_path):
    import lm.encoder

    calls = []

    def record(name, **options):
        calls.append((name, options))
        raise InputError("stop here")

    monkeypatch.setattr(lm.encoder, "load_encoder", record)
    for extra in ([], ["--allow_download"]):
        assert rank("--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", "org/encoder",
                    "--input_data_addr", sample_questions(get_task("LaMP_4")),
                    "--output_ranking_addr", tmp_path / "r.json", *extra) == 2
    assert [(name, options["allow_download"]) for name, options in calls] == [("org/encoder", False),
                                                                              ("org/encoder", True)]


def test_rank_profiles_contriever_and_recency(tiny_encoder, tmp_path):
    questions = sample_questions(get_task("LaMP_2"))
    for ranker, extra in (("contriever", ["--contriever_checkpoint", tiny_encoder, "--batch_size", 4]),
                          ("recency", ["--use_date"])):
        out = tmp_path / f"{ranker}.json"
        assert rank("--task", "LaMP-2", "--ranker", ranker, "--input_data_addr", questions,
                    "--output_ranking_addr", out, *extra) == 0
        assert len(json.loads(out.read_text())) == 24


@pytest.mark.parametrize("argv", [
    ["--input_data_addr", "missing.json"],
    ["--input_data_addr", SAMPLE / "LaMP_4" / "dev_outputs.json"],          # golds, not questions
], ids=["missing_file", "wrong_file"])
def test_rank_profiles_bad_input_is_one_line_and_no_output(argv, tmp_path, capsys):
    out = tmp_path / "ranking.json"
    assert rank("--task", "LaMP_4", "--ranker", "bm25", "--output_ranking_addr", out, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.fixture
def lamp4_files(tmp_path):
    questions = load_examples(SAMPLE / "LaMP_4" / "dev_questions.json", task="LaMP_4", limit=3)
    golds = json.loads((SAMPLE / "LaMP_4" / "dev_outputs.json").read_text())
    golds["golds"] = [g for g in golds["golds"] if g["id"] in {q.id for q in questions}]
    paths = {"questions": tmp_path / "q.json", "outputs": tmp_path / "o.json", "ranking": tmp_path / "r.json",
             "merged": tmp_path / "out" / "merged.json"}
    paths["questions"].write_text(json.dumps([{"id": q.id, "input": q.input, "profile": q.profile,
                                               "user_id": q.user_id} for q in questions]))
    paths["outputs"].write_text(json.dumps(golds))
    return questions, golds, paths


def test_merge_with_rank_reorders_appends_unranked_items_and_adds_golds(lamp4_files, capsys):
    questions, golds, paths = lamp4_files
    first = questions[0]
    ids = [item["id"] for item in first.profile]
    ranking = {q.id: [item["id"] for item in q.profile][::-1] for q in questions}
    ranking[first.id] = [ids[2], ids[0]]                         # ranks only two of the items
    paths["ranking"].write_text(json.dumps(ranking))
    assert merge("--lamp_questions_addr", paths["questions"], "--lamp_output_addr", paths["outputs"],
                 "--profile_ranking_addr", paths["ranking"], "--merged_output_addr", paths["merged"]) == 0
    merged = json.loads(paths["merged"].read_text())
    assert [record["id"] for record in merged] == [q.id for q in questions]
    assert [item["id"] for item in merged[0]["profile"]] == [ids[2], ids[0]] + [i for i in ids if i not in
                                                                                 (ids[0], ids[2])]
    assert [item["id"] for item in merged[1]["profile"]] == ranking[questions[1].id]
    assert [record["output"] for record in merged] == [g["output"] for g in golds["golds"]]
    assert merged[0]["user_id"] == first.user_id
    assert json.loads(paths["merged"].with_name("merged.json.config.json").read_text())["output"] == \
        str(paths["merged"])
    assert str(paths["merged"]) in capsys.readouterr().out
    # Without a ranking the original order is kept; the result loads as ranked questions with golds.
    assert merge("--lamp_questions_addr", paths["questions"], "--lamp_output_addr", paths["outputs"],
                 "--merged_output_addr", paths["merged"]) == 0
    reloaded = load_examples(paths["merged"], task="LaMP_4")
    assert [e.profile for e in reloaded] == [q.profile for q in questions]
    assert [e.target for e in reloaded] == [g["output"] for g in golds["golds"]]


def test_merge_with_rank_missing_golds_fail_unless_allowed(lamp4_files, capsys):
    questions, golds, paths = lamp4_files
    golds["golds"] = golds["golds"][1:]
    paths["outputs"].write_text(json.dumps(golds))
    args = ["--lamp_questions_addr", paths["questions"], "--lamp_output_addr", paths["outputs"],
            "--merged_output_addr", paths["merged"]]
    assert merge(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and repr(questions[0].id) in err and "--allow_missing_outputs" in err
    assert not paths["merged"].exists()
    assert merge(*args, "--allow_missing_outputs") == 0
    merged = json.loads(paths["merged"].read_text())
    assert "output" not in merged[0]                                 # never an earlier question's gold
    assert [m["output"] for m in merged[1:]] == [g["output"] for g in golds["golds"]]


@pytest.mark.parametrize("ranking", [{"bad_item": True}, {"bad_question": True}, "not a ranking"])
def test_merge_with_rank_bad_ranking_is_one_line_and_no_output(lamp4_files, capsys, ranking):
    questions, _, paths = lamp4_files
    content = {q.id: [item["id"] for item in q.profile] for q in questions}
    if ranking == {"bad_item": True}:
        content[questions[1].id].append("no-such-item")
    elif ranking == {"bad_question": True}:
        content["no-such-question"] = []
    else:
        content = ranking
    paths["ranking"].write_text(json.dumps(content))
    assert merge("--lamp_questions_addr", paths["questions"], "--lamp_output_addr", paths["outputs"],
                 "--profile_ranking_addr", paths["ranking"], "--merged_output_addr", paths["merged"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "r.json" in err
    assert not paths["merged"].parent.exists()


@pytest.mark.parametrize("script", ["-m lamp_rag.rank_profiles", "-m lamp_rag.merge_with_rank",
                                    "bench/bench_rank_bm25.py"])
def test_help(script):
    out = subprocess.run([sys.executable, *script.split(), "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0 and "usage:" in out.stdout


def test_bench_script_agrees_with_rank_bm25():
    out = subprocess.run([sys.executable, "bench/bench_rank_bm25.py", "--questions", "20", "--profile_size", "10"],
                         capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert "orders differing beyond exact score ties: 0" in out.stdout and "speedup" in out.stdout
