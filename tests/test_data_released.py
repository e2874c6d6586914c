"""Files shaped like the released data (HF LongLaMP rows, OPPU per-task items, pre-2024 LaMP_2 news), written
by hand from the spec's schemas (tests/fixtures/released/), and the input mistakes users make with them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.errors import InputError
from data.io import read_json
from data.loaders import iter_records, load_examples, read_golds, write_longlamp_records
from data.prompts import build_messages
from data.tasks import get_task, may_mean, task_of_file
from eval.scoring import metric_values, score_files

REPO = Path(__file__).resolve().parents[1]
RELEASED = REPO / "tests/fixtures/released"
NEWS = RELEASED / "lamp2_news_2023"


def dump(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- HF LongLaMP rows without item ids

@pytest.mark.parametrize("name,task,user_field", [
    ("longlamp_product_review_user_val.jsonl", "LongLaMP_3", "reviewerId"),
    ("longlamp_topic_writing_user_val.json", "LongLaMP_4", "author"),
])
def test_hf_rows_without_item_ids_get_stable_ids(name, task, user_field):
    path = RELEASED / name
    rows = list(iter_records(path))
    assert all("id" not in item for row in rows for item in row["profile"])
    examples = load_examples(path, task=task)
    # <record id>-p<position>, the record id being <user>-<row index> for id-less rows.
    for index, (row, example) in enumerate(zip(rows, examples)):
        assert example.id == f"{row[user_field]}-{index}" and example.user_id == row[user_field]
        assert [item["id"] for item in example.profile] == [f"{example.id}-p{i}" for i in range(len(row["profile"]))]
        assert [{k: v for k, v in item.items() if k != "id"} for item in example.profile] == row["profile"]
    assert load_examples(path, task=task) == examples          # the same ids on every load


def test_rankings_of_generated_ids_merge_back_in_another_process(tmp_path):
    rows = RELEASED / "longlamp_topic_writing_user_val.json"
    steps = [["lamp_rag.rank_profiles", "--task", "LongLaMP_4", "--ranker", "bm25", "--input_data_addr", rows,
              "--output_ranking_addr", tmp_path / "rank.json"],
             ["lamp_rag.merge_with_rank", "--task", "LongLaMP_4", "--lamp_questions_addr", rows,
              "--profile_ranking_addr", tmp_path / "rank.json", "--merged_output_addr", tmp_path / "merged.json"]]
    for module, *args in steps:
        result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
    ranking = json.loads((tmp_path / "rank.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    merged = {question["id"]: [item["id"] for item in question["profile"]] for question in merged}
    assert merged == ranking and sorted(ranking["quietbaker-0"]) == ["quietbaker-0-p0", "quietbaker-0-p1",
                                                                     "quietbaker-0-p2"]


def test_generated_item_ids_survive_a_write_and_fill_only_gaps(tmp_path):
    rows = list(iter_records(RELEASED / "longlamp_topic_writing_user_val.json"))
    rows[0]["profile"][1]["id"] = "mine"
    examples = load_examples(dump(tmp_path / "val.json", rows), task="topic_writing")
    assert [item["id"] for item in examples[0].profile] == ["quietbaker-0-p0", "mine", "quietbaker-0-p2"]
    write_longlamp_records(tmp_path / "back.jsonl", examples, "LongLaMP_4")
    assert load_examples(tmp_path / "back.jsonl", task="LongLaMP_4") == examples


def test_tasks_released_with_item_ids_still_need_them(tmp_path):
    row = {"name": "Ada", "input": 'Generate an abstract for the title "T" using the following items: x',
           "output": "o", "profile": [{"title": "t", "abstract": "a", "year": "2001"}]}
    with pytest.raises(InputError, match=r"a.json: record 'Ada-0': field 'profile\[0\].id': missing"):
        load_examples(dump(tmp_path / "a.json", [row]), task="LongLaMP_2")


# ----------------------------------------------------------------------------- OPPU per-task item layouts

# spec curp_cope_oppu 4.2-4.3: users keyed user_id (LaMP) / user_name (LongLaMP); items {id, <task fields>}.
OPPU_ITEMS = {
    "citation": ({"title": "Sparse attention for long documents",
                  "citation": "Longformer: the long-document transformer"}, "citation"),
    "movie_tagging": ({"description": "A boy finds a dragon egg.", "tag": "fantasy"}, "tag"),
    "news_categorize": ({"text": "The striker signed a three-year deal.", "category": "sports"}, "category"),
    "product_rating": ({"text": "Stopped working after a week.", "score": "1"}, "score"),
    "news_headline": ({"text": "Rain is expected all weekend.", "title": "A wet weekend ahead"}, "title"),
    "scholarly_title": ({"abstract": "We study pruning of large models.", "title": "Pruning at scale"}, "title"),
    "tweet_paraphrase": ({"text": "coffee first, then the world"}, "text"),
    "abstract_generation": ({"title": "Graph kernels", "abstract": "We compare graph kernels."}, "abstract"),
    "review_writing": ({"overall": "5.0", "description": "A kettle.", "summary": "Fast",
                        "reviewText": "Boils in a minute."}, "reviewText"),
    "topic_writing": ({"summary": "First marathon", "content": "I ran 42 km today."}, "content"),
}


@pytest.mark.parametrize("task", OPPU_ITEMS)
def test_oppu_item_layouts_of_every_task_load(tmp_path, task):
    fields, output_field = OPPU_ITEMS[task]
    spec = get_task(task)
    user_key = "user_name" if spec.benchmark == "LongLaMP" else "user_id"
    items = [{"id": "h1", **fields}, {"id": "h2", **fields}]
    users = [{user_key: "u7", "profile": items, "query": [{"id": "q1", "input": "the question", "gold": "g"}]}]
    (example,) = load_examples(dump(tmp_path / "user_top_100_history.json", users), task=task)
    assert (example.id, example.user_id, example.target, example.profile) == ("q1", "u7", "g", items)
    assert spec.item_output(items[0]) == fields[output_field]
    shape = spec.item_shape(items[0])      # retrieval and prompts read fields the item has
    assert {shape.output_field, *shape.document_fields} <= set(fields)
    assert spec.document(items[0]).strip() and spec.item_prompt(items[0])


def test_oppu_citation_and_news_items_are_read_with_their_own_fields():
    citation, news = get_task("LaMP_1"), get_task("LaMP_2N")
    item = {"id": "h1", **OPPU_ITEMS["citation"][0]}
    assert citation.item_prompt(item) == "paper title: Sparse attention for long documents reference:"
    assert citation.item_output(item) == "Longformer: the long-document transformer"
    assert citation.document(item) == "Sparse attention for long documents Longformer: the long-document transformer"
    lamp_item = {"id": "p1", "title": "Mine", "abstract": "We show."}
    assert citation.item_output(lamp_item) == "We show." and citation.document(lamp_item) == "Mine We show."
    news_item = {"id": "h2", **OPPU_ITEMS["news_categorize"][0]}
    assert news.document(news_item) == "The striker signed a three-year deal."
    assert news.item_output(news_item) == "sports"
    messages = build_messages(citation, "question", [item])
    assert messages[:2] == [{"role": "user", "content": citation.item_prompt(item)},
                            {"role": "assistant", "content": "Longformer: the long-document transformer"}]


def test_an_item_fitting_no_layout_names_the_layouts(tmp_path):
    users = [{"user_id": "u1", "profile": [{"id": "h1", "title": "only a title"}],
              "query": [{"id": "q1", "input": "x", "gold": "[1]"}]}]
    with pytest.raises(InputError, match=r"u.json: record 'u1': field 'profile\[0\].abstract': missing \(a LaMP_1 "
                                         r"profile item needs id, title, abstract; or id, title, citation \(OPPU\)\)"):
        load_examples(dump(tmp_path / "u.json", users), task="LaMP_1")


# ----------------------------------------------------------------------------- LaMP_2 news files from before 2024

def test_registry_tells_old_news_lamp2_files_by_their_labels():
    assert task_of_file("LaMP_2", ["sports", " politics ", "comedy"]).name == "LaMP_2N"
    assert task_of_file("LaMP-2", ["comedy", "sports"]).name == "LaMP_2"          # a tie keeps the named task
    assert task_of_file("LaMP_2", ["garbage"]).name == "LaMP_2"
    assert task_of_file("LaMP_2", items=[{"id": "1", "text": "t", "category": "crime"}]).name == "LaMP_2N"
    assert task_of_file("LaMP_2", ["comedy"], requested="LaMP_2N").name == "LaMP_2N"
    assert task_of_file("movie_tagging", ["sports"]).name == "LaMP_2"            # only the bare name is old
    assert task_of_file("LaMP_4", ["sports"]).name == "LaMP_4"
    with pytest.raises(InputError, match="is LaMP_4 but the task is LaMP_2N"):
        task_of_file("LaMP_4", requested="LaMP_2N")
    assert may_mean("LaMP_2", "LaMP_2N") and not may_mean("LaMP_2N", "LaMP_2")


def test_old_news_lamp2_files_load_as_lamp2n(tmp_path):
    assert read_golds(NEWS / "dev_outputs.json") == ("LaMP_2N", {"110": "politics", "111": "sports",
                                                                 "112": "business"})
    assert read_golds(NEWS / "dev_outputs.json", task="LaMP_2N")[0] == "LaMP_2N"
    examples = load_examples(NEWS / "dev_questions.json", NEWS / "dev_outputs.json")
    assert [(e.id, e.task, e.target) for e in examples] == [("110", "LaMP_2N", "politics"),
                                                            ("111", "LaMP_2N", "sports"),
                                                            ("112", "LaMP_2N", "business")]
    for task in ("LaMP_2", "LaMP_2N"):               # without the outputs: by the flag, or the items' labels
        assert {e.task for e in load_examples(NEWS / "dev_questions.json", task=task)} == {"LaMP_2N"}
    with pytest.raises(InputError, match=r"record '#0': must be an object"):   # a first record is never lost
        load_examples(dump(tmp_path / "null.json", [None]), task="LaMP_2")
    assert load_examples(NEWS / "dev_questions.json", NEWS / "dev_outputs.json", task="LaMP_2N") == examples


def test_current_movie_lamp2_files_stay_lamp2(tmp_path):
    golds = dump(tmp_path / "o.json", {"task": "LaMP_2", "golds": [{"id": "1", "output": "comedy"}]})
    assert read_golds(golds)[0] == "LaMP_2"
    with pytest.raises(InputError, match=r"o.json: field 'task': is LaMP_2 but the task is LaMP_4"):
        read_golds(golds, task="LaMP_4")
    news_preds = dump(tmp_path / "p.json", {"task": "LaMP_2", "golds": [{"id": "1", "output": "sports"}]})
    with pytest.raises(InputError, match=r"p.json: field 'task': task LaMP_2N does not match LaMP_2"):
        score_files(golds, news_preds)


@pytest.mark.parametrize("task", [None, "LaMP_2", "LaMP_2N"])
def test_old_news_lamp2_files_score_with_the_news_labels(task):
    report = score_files(NEWS / "dev_outputs.json", NEWS / "predictions.json", task=task)
    assert report["task"] == "LaMP_2N"
    # 2 of 3 right; macro-F1 over the 15 news labels: politics and sports 1, every other label 0.
    assert metric_values(report) == pytest.approx({"accuracy": 2 / 3, "f1": 2 / 15})


@pytest.mark.parametrize("flags", [["--task_name", "LaMP_2"], ["--task", "LaMP_2N"], []])
def test_eval_task_scores_old_news_lamp2_files(tmp_path, flags):
    result = subprocess.run([sys.executable, "eval/eval_task.py", "--golds_json", NEWS / "dev_outputs.json",
                             "--preds_json", NEWS / "predictions.json", *flags, "--output_file",
                             tmp_path / "scores.json"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "LaMP_2N: 3 examples" in result.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert json.dumps(scores).count("0.6666") == 1 and "LaMP_2N" in json.dumps(scores)


# ----------------------------------------------------------------------------- bad input

def test_a_folder_given_as_an_input_file_is_called_a_folder(tmp_path):
    folder = tmp_path / "dev_questions.json"
    folder.mkdir()
    for read in (lambda: load_examples(folder, task="LaMP_4"), lambda: read_golds(folder), lambda: read_json(folder)):
        with pytest.raises(InputError, match=r"dev_questions.json: is a folder, not a file$"):
            read()
    result = subprocess.run([sys.executable, "-m", "eval.eval_task", "--golds_json", str(folder), "--preds_json",
                             str(NEWS / "predictions.json")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {folder}: is a folder, not a file"


def test_duplicate_profile_item_ids_name_file_record_and_field(tmp_path):
    questions = json.loads((NEWS / "dev_questions.json").read_text())
    questions[1]["profile"].append({**questions[1]["profile"][0], "text": "another text"})
    with pytest.raises(InputError) as err:
        load_examples(dump(tmp_path / "q.json", questions), task="LaMP_2N")
    assert str(err.value) == (f"{tmp_path / 'q.json'}: record '111': field 'profile[1].id': "
                              f"duplicate item id '1110' (also profile[0])")
    users = [{"user_id": "u1", "profile": [{"id": 5, "text": "a"}, {"id": "5", "text": "b"}],
              "query": [{"id": "q", "input": "x"}]}]
    with pytest.raises(InputError, match=r"u.json: record 'u1': field 'profile\[1\].id': duplicate item id '5'"):
        load_examples(dump(tmp_path / "u.json", users), task="LaMP_7")


@pytest.mark.parametrize("name,task,user_field", [
    ("longlamp_product_review_user_val.jsonl", "LongLaMP_3", "reviewerId"),
    ("longlamp_topic_writing_user_val.json", "LongLaMP_4", "author"),
])
def test_a_longlamp_row_without_its_user_is_an_error(tmp_path, name, task, user_field):
    rows = list(iter_records(RELEASED / name))
    del rows[1][user_field]
    with pytest.raises(InputError) as err:
        load_examples(dump(tmp_path / "rows.json", rows), task=task)
    assert str(err.value) == (f"{tmp_path / 'rows.json'}: record '#1': field '{user_field}': missing "
                              f"(every {task} record names its user in '{user_field}')")
    rows[1] = {"id": "given", **rows[1]}                          # an id does not stand in for the user
    with pytest.raises(InputError, match=rf"record 'given': field '{user_field}': missing"):
        load_examples(dump(tmp_path / "rows.json", rows), task=task)


def test_abstract_rows_without_name_and_lamp_questions_without_user_id(tmp_path):
    row = {"id": "r1", "input": 'Generate an abstract for the title "T" using the following items: x',
           "output": "o", "profile": [{"id": "i", "title": "t", "abstract": "a", "year": "2001"}]}
    with pytest.raises(InputError, match=r"a.json: record 'r1': field 'name': missing"):
        load_examples(dump(tmp_path / "a.json", [row]), task="LongLaMP_2")
    # User-based LaMP splits carry no user id: still fine.
    assert load_examples(NEWS / "dev_questions.json", task="LaMP_2N")[0].user_id is None


def test_to_lamp_refuses_to_drop_longlamp_user_ids(tmp_path):
    source = RELEASED / "longlamp_topic_writing_user_val.json"
    run = [sys.executable, "-m", "data.convert"]
    assert subprocess.run([*run, "to-oppu", "--questions", str(source), "--task", "LongLaMP_4", "--output_dir",
                           str(tmp_path / "oppu")], cwd=REPO, capture_output=True).returncode == 0
    result = subprocess.run([*run, "to-lamp", "--input_dir", str(tmp_path / "oppu"), "--output_dir",
                             str(tmp_path / "back"), "--no_user_id"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "back").exists()
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: --no_user_id: every LongLaMP_4 record names its user ('author')"
