"""data.loaders (every layout, streaming, validation, writers) and data.alignx."""
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import loaders
from data.alignx import AlignXRecord, history_texts, iter_alignx, load_alignx, parse_alignx
from data.errors import InputError
from data.loaders import (iter_examples, iter_records, load_examples, read_golds, write_lamp_outputs,
                          write_lamp_questions, write_longlamp_records, write_predictions)
from data.records import Example

REPO = Path(__file__).resolve().parents[1]


def item(i, **extra):
    return {"id": f"p{i}", "title": f"title {i}", "text": f"text {i}", "date": "2020-01-01", **extra}


def question(qid, n_items=2, **extra):
    return {"id": qid, "input": f"Generate a headline for the following article: body {qid}",
            "profile": [item(f"{qid}-{i}") for i in range(n_items)], **extra}


def dump(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def lamp_files(tmp_path):
    qs = [question("q1", user_id="u1", source="web"), question("q2", user_id="u1"), question("q3")]
    golds = {"task": "LaMP_4", "golds": [{"id": q, "output": f"gold {q}"} for q in ("q3", "q1", "q2")]}
    return dump(tmp_path / "dev_questions.json", qs), dump(tmp_path / "dev_outputs.json", golds)


# ----------------------------------------------------------------------------- formats

def test_lamp_questions_joined_with_outputs(lamp_files):
    examples = load_examples(*lamp_files)
    assert [e.id for e in examples] == ["q1", "q2", "q3"]
    assert [e.target for e in examples] == ["gold q1", "gold q2", "gold q3"]
    assert {e.task for e in examples} == {"LaMP_4"}
    assert [e.user_id for e in examples] == ["u1", "u1", None]
    assert examples[0].extra == {"source": "web"} and examples[1].extra == {}
    assert examples[0].profile[0] == item("q1-0")


def test_task_argument_takes_any_alias_and_must_match(lamp_files):
    assert load_examples(*lamp_files, task="news_headline")[0].task == "LaMP_4"
    with pytest.raises(InputError, match=r"dev_outputs.json: field 'task': is LaMP_4 but the task is LaMP_5"):
        load_examples(*lamp_files, task="LaMP-5")


def test_questions_without_outputs_need_a_task(lamp_files):
    with pytest.raises(InputError, match="dev_questions.json: the task is unknown"):
        load_examples(lamp_files[0])
    examples = load_examples(lamp_files[0], task="LaMP_4", limit=2)
    assert [e.target for e in examples] == [None, None] and len(examples) == 2


def test_merged_file_carries_its_outputs(tmp_path, lamp_files):
    merged = dump(tmp_path / "merged.json", [question("a", output="A"), question("b", output="B")])
    assert [e.target for e in load_examples(merged, task="LaMP_4")] == ["A", "B"]
    golds = dump(tmp_path / "golds.json", {"task": "LaMP_4", "golds": [{"id": "a", "output": "A"},
                                                                      {"id": "b", "output": "other"}]})
    with pytest.raises(InputError, match=r"merged.json: record 'b': field 'output': differs from the gold"):
        load_examples(merged, golds)


def longlamp_rows():
    return [{"name": f"author{i % 2}", "input": f'Generate an abstract for the title "T{i}" using the following '
             f"items: a.c", "output": f"abstract {i}", "venue": "arXiv",
             "profile": [{"id": f"i{i}-{j}", "title": f"t{j}", "abstract": f"a{j}", "year": "2001"}
                         for j in range(3)]} for i in range(4)]


def test_longlamp_rows_in_json_jsonl_and_parquet_give_the_same_examples(tmp_path):
    rows = longlamp_rows()
    as_json = dump(tmp_path / "val.json", rows)
    as_jsonl = tmp_path / "val.jsonl"
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    as_parquet = tmp_path / "val.parquet"
    pq.write_table(pa.Table.from_pylist(rows), as_parquet)
    examples = load_examples(as_json, task="LongLaMP_2")
    assert load_examples(as_jsonl, task="abstract_generation") == examples
    assert load_examples(as_parquet, task="LongLaMP_2") == examples
    # Real LongLaMP rows have no id: <user>-<row index>.
    assert [e.id for e in examples] == ["author0-0", "author1-1", "author0-2", "author1-3"]
    assert [e.user_id for e in examples] == ["author0", "author1", "author0", "author1"]
    assert examples[2].target == "abstract 2" and examples[2].extra == {"venue": "arXiv"}


def test_longlamp_rows_use_the_registry_user_field(tmp_path):
    row = {"reviewerId": "R1", "input": "Generate the review ...", "output": "Great.",
           "profile": [{"id": "v1", "overall": 5.0, "summary": "s", "description": "d", "reviewText": "r"}]}
    (example,) = load_examples(dump(tmp_path / "r.json", [row]), task="LongLaMP_3")
    assert (example.user_id, example.id, example.extra) == ("R1", "R1-0", {})


def oppu_users():
    profile = [item(1), item(2)]
    return [{"user_id": "u1", "profile": profile, "cluster": 3,
             "query": [{"id": "q1", "input": "in 1", "gold": "g1"},
                       {"id": "q2", "input": "in 2", "gold": "g2", "note": "x"}]},
            {"user_id": "u2", "profile": [item(3)], "query": [{"id": "q3", "input": "in 3", "gold": "g3"}]}]


def test_oppu_user_file_gives_one_example_per_query(tmp_path):
    examples = load_examples(dump(tmp_path / "user_others.json", oppu_users()), task="LaMP_4")
    assert [(e.id, e.user_id, e.target) for e in examples] == [("q1", "u1", "g1"), ("q2", "u1", "g2"),
                                                                ("q3", "u2", "g3")]
    assert examples[0].profile == examples[1].profile == [item(1), item(2)]
    assert examples[0].extra == {"user_fields": {"cluster": 3}}
    assert examples[1].extra == {"note": "x", "user_fields": {"cluster": 3}}
    assert examples[2].extra == {}


def test_oppu_longlamp_users_are_keyed_by_user_name(tmp_path):
    users = [{"user_name": "Ada", "profile": [{"id": "i", "title": "t", "abstract": "a"}],
              "query": [{"id": "q", "input": "in", "gold": "out"}]}]
    (example,) = load_examples(dump(tmp_path / "u.json", users), task="LongLaMP_2")
    assert (example.user_id, example.target) == ("Ada", "out")


def test_avocado_test_file_wrapped_in_golds(tmp_path):
    path = dump(tmp_path / "test_questions.json", {"task": "LaMP_6", "golds": [question("t1"), question("t2")]})
    examples = load_examples(path)
    assert [(e.id, e.task, e.target) for e in examples] == [("t1", "LaMP_6", None), ("t2", "LaMP_6", None)]


def test_integer_ids_become_strings(tmp_path):
    q = question(7)
    q["profile"][0]["id"] = 70
    (example,) = load_examples(dump(tmp_path / "q.json", [q]), task="LaMP_4")
    assert example.id == "7" and example.profile[0]["id"] == "70"


def test_gitlamp_lamp4(shared_data):
    examples = load_examples(shared_data / "gitlamp/dev_questions.json", shared_data / "gitlamp/dev_outputs.json")
    assert len(examples) == 32 and {e.task for e in examples} == {"LaMP_4"}
    assert all(e.target and e.profile and e.input.startswith("Generate a headline") for e in examples)


def test_gitlamp_long_as_longlamp2(shared_data):
    examples = load_examples(shared_data / "gitlamp_long/val.json", task="LongLaMP_2")
    rows = json.loads((shared_data / "gitlamp_long/val.json").read_text())
    assert len(examples) == 32 and [e.user_id for e in examples] == [r["name"] for r in rows]
    assert [e.id for e in examples] == [r["id"] for r in rows]
    assert all(e.target and e.extra == {} for e in examples)


# ----------------------------------------------------------------------------- streaming

def test_reading_the_first_example_does_not_parse_the_rest(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + json.dumps(question("q0")) + ",\n" + '{"id": "q1", oops}' + "]")
    examples = iter_examples(path, task="LaMP_4")
    assert next(examples).id == "q0"            # the broken second record is not read yet
    with pytest.raises(InputError, match=r"big.json: malformed JSON at line 2"):
        next(examples)


def test_a_large_array_is_streamed_in_little_memory(tmp_path):
    path = tmp_path / "train.json"
    with open(path, "w") as handle:
        handle.write("[")
        for i in range(3000):
            handle.write(("," if i else "") + json.dumps(question(f"q{i}", n_items=40)))
        handle.write("]")
    size = path.stat().st_size
    assert size > 8_000_000
    tracemalloc.start()
    first = next(iter_examples(path, task="LaMP_4"))
    first_peak = tracemalloc.get_traced_memory()[1]
    count = sum(1 for _ in iter_examples(path, task="LaMP_4"))
    full_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert first.id == "q0" and first_peak < size / 4
    assert count == 3000 and full_peak < size / 2     # json.load would need several times the size


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_records_cut_at_any_chunk_boundary_decode_exactly(tmp_path, monkeypatch, chunk):
    records = [{"id": "é\"\\u", "n": 12345678901234567890, "f": -1.5e-7, "t": True, "z": None,
                "s": "tab\tline\nüñï€𝄞", "l": [1, [2, {}], []]}, 42, "text", [], {"a": 0.25}]
    path = dump(tmp_path / "tricky.json", records)
    monkeypatch.setattr(loaders, "CHUNK_CHARS", chunk)
    assert list(iter_records(path)) == records
    lines = tmp_path / "tricky_lines.json"        # JSON Lines under a .json name
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert list(iter_records(lines)) == records


def test_a_syntax_error_names_its_line_without_reading_on(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "CHUNK_CHARS", 16)
    path = tmp_path / "bad.json"
    path.write_text('[\n{"id": "a"},\n{"id" "b"},\n' + '{"id": "c"},\n' * 1000 + "]")
    stream = iter_records(path)
    assert next(stream) == {"id": "a"}
    with pytest.raises(InputError, match="bad.json: malformed JSON at line 3: Expecting ':' delimiter"):
        next(stream)


# ----------------------------------------------------------------------------- validation

def bad_question_files():
    good = question("q1")
    no_id = {k: v for k, v in good.items() if k != "id"}
    return {
        "malformed": ('[{"id": "q1",, }]', r"x.json: malformed JSON at line 1"),
        "missing id": ([no_id], r"x.json: record '#0': field 'id': missing"),
        "missing input": ([{"id": "q1", "profile": good["profile"]}],
                          r"x.json: record 'q1': field 'input': missing"),
        "missing profile": ([{"id": "q1", "input": "x"}], r"x.json: record 'q1': field 'profile': missing"),
        "empty profile": ([{**good, "profile": []}], r"x.json: record 'q1': field 'profile': empty profile"),
        "item without id": ([{**good, "profile": [{"title": "t", "text": "x"}]}],
                            r"x.json: record 'q1': field 'profile\[0\].id': missing"),
        "item without field": ([{**good, "profile": [item(1), {"id": "p", "text": "x"}]}],
                               r"x.json: record 'q1': field 'profile\[1\].title': missing"),
        "float id": ([{**good, "id": 1.5}], r"x.json: record '#0': field 'id': must be a string id, got float"),
        "duplicate id": ([good, good], r"x.json: record 'q1': field 'id': duplicate id"),
        "not an object": ([good, 3], r"x.json: record '#1': must be an object"),
        "gold record": ([{"id": "q1", "output": "o"}], r"x.json: record 'q1': a gold record, not a question"),
        "input not text": ([{**good, "input": ["x"]}], r"x.json: record 'q1': field 'input': must be a string"),
        "trailing data": ("[" + json.dumps(good) + "] []", r"x.json: malformed JSON at line 1: unexpected data"),
        "empty file": ("", r"x.json: empty file"),
    }


@pytest.mark.parametrize("case", bad_question_files())
def test_bad_questions_give_one_line_naming_file_record_and_field(tmp_path, case):
    content, message = bad_question_files()[case]
    path = tmp_path / "x.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(InputError, match=message) as err:
        load_examples(path, task="LaMP_4")
    assert "\n" not in str(err.value)


def test_ids_that_differ_between_questions_and_outputs_are_named(tmp_path):
    questions = dump(tmp_path / "q.json", [question(f"q{i}") for i in range(6)])
    golds = dump(tmp_path / "o.json", {"task": "LaMP_4", "golds": [{"id": f"q{i}", "output": "o"}
                                                                   for i in (0, 2, 4)]})
    with pytest.raises(InputError, match=r"q.json: record 'q1': field 'id': no gold in o.json for "
                                         r"questions 'q1', 'q3', 'q5'"):
        load_examples(questions, golds)
    extra_golds = dump(tmp_path / "o2.json", {"task": "LaMP_4", "golds": [{"id": f"q{i}", "output": "o"}
                                                                          for i in range(9)]})
    with pytest.raises(InputError, match=r"o2.json: 3 gold id\(s\) have no question in q.json: 'q6', 'q7', 'q8'"):
        load_examples(questions, extra_golds)


def test_unknown_task_in_argument_or_file(tmp_path, lamp_files):
    with pytest.raises(InputError, match="unknown task 'LaMP_44'; did you mean"):
        load_examples(lamp_files[0], task="LaMP_44")
    golds = dump(tmp_path / "o.json", {"task": "LaMP_9", "golds": []})
    with pytest.raises(InputError, match=r"o.json: field 'task': unknown task 'LaMP_9'"):
        read_golds(golds)


def test_outputs_file_passed_as_questions(lamp_files):
    with pytest.raises(InputError, match=r"dev_outputs.json: an outputs file .* pass it as the outputs file"):
        load_examples(lamp_files[1])


def test_oppu_user_without_user_id(tmp_path):
    users = oppu_users()
    del users[1]["user_id"]
    with pytest.raises(InputError, match=r"u.json: record '#1': field 'user_id': missing user id"):
        load_examples(dump(tmp_path / "u.json", users), task="LaMP_4")


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="nothing.json: file not found"):
        load_examples(tmp_path / "nothing.json", task="LaMP_4")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="fake.parquet: unreadable parquet file"):
        load_examples(tmp_path / "fake.parquet", task="LaMP_4")
    (tmp_path / "latin1.json").write_bytes('[{"id": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(InputError, match="latin1.json: not UTF-8 text"):
        load_examples(tmp_path / "latin1.json", task="LaMP_4")


# ----------------------------------------------------------------------------- golds and writers

def test_read_golds_and_write_predictions(tmp_path):
    path = dump(tmp_path / "preds.json", {"task": "LaMP-4", "golds": [{"id": 1, "output": "a"},
                                                                     {"id": "2", "output": "b"}]})
    assert read_golds(path) == ("LaMP_4", {"1": "a", "2": "b"})
    out = write_predictions(tmp_path / "out" / "p.json", "news_headline", {"1": "a", "2": "b"})
    assert json.loads(out.read_text()) == {"task": "LaMP_4", "golds": [{"id": "1", "output": "a"},
                                                                     {"id": "2", "output": "b"}]}
    dup = dump(tmp_path / "dup.json", {"task": "LaMP_4", "golds": [{"id": "1", "output": "a"}] * 2})
    with pytest.raises(InputError, match=r"dup.json: record '1': field 'id': duplicate id"):
        read_golds(dup)
    with pytest.raises(InputError, match=r"preds.json: field 'task': is LaMP_4 but the task is LaMP_5"):
        read_golds(path, task="LaMP_5")
    untitled = dump(tmp_path / "untitled.json", {"golds": []})
    with pytest.raises(InputError, match=r"untitled.json: field 'task': missing"):
        read_golds(untitled)
    assert read_golds(untitled, task="LaMP_7") == ("LaMP_7", {})


def test_writers_round_trip(tmp_path, lamp_files):
    examples = load_examples(*lamp_files)
    write_lamp_questions(tmp_path / "out/q.json", examples)
    write_lamp_outputs(tmp_path / "out/o.json", "LaMP-4", examples)
    assert load_examples(tmp_path / "out/q.json", tmp_path / "out/o.json") == examples
    assert json.loads((tmp_path / "out/q.json").read_text()) == json.loads(lamp_files[0].read_text())
    rows = load_examples(dump(tmp_path / "rows.json", longlamp_rows()), task="LongLaMP_2")
    for name in ("rows_out.json", "rows_out.jsonl"):
        write_longlamp_records(tmp_path / name, rows, "LongLaMP_2")
        assert load_examples(tmp_path / name, task="LongLaMP_2") == rows
    with pytest.raises(InputError, match=r"o2.json: record 'q1': field 'output': no gold output to write"):
        write_lamp_outputs(tmp_path / "o2.json", "LaMP_4", [Example(id="q1", input="x")])
    assert not (tmp_path / "o2.json").exists()


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path):
    questions = dump(tmp_path / "q.json", [question("q1"), {**question("q2"), "profile": []}])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "data.convert", "to-oppu", "--questions", str(questions),
                             "--task", "LaMP_4", "--output_dir", str(out)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (f"error: {questions}: record 'q2': field 'profile': "
                                                      f"empty profile")
    assert "Traceback" not in result.stderr and not out.exists()


# ----------------------------------------------------------------------------- AlignX

def alignx_record(**changes):
    record = {
        "prompt": "What do you cook on Sundays?", "chosen": "A slow roast.", "rejected": "Nothing.",
        "Preference Direction": [1, 0.5, 0] * 30,
        "Demographic Information": "A retired teacher from Lyon.",
        "User-Generated Content": [{"prompt": "Best hobby?", "comment": "Gardening", "Preference Direction":
                                    [0.5] * 90, "ugc_id": 4},
                                   {"prompt": "Tea or coffee?", "comment": "Tea", "Preference Direction": [1] * 90}],
        "Pair-wise Comparative Feedback": [{"prompt": "Pick a city", "chosen": "Lyon", "rejected": "Paris",
                                            "Preference Direction": [0] * 90}],
        "profile": "Likes cooking",
    }
    record.update(changes)
    return record


def test_alignx_records_from_json_jsonl_and_parquet(tmp_path):
    records = [alignx_record(), alignx_record(prompt="Second")]
    as_json = dump(tmp_path / "a.json", records)
    as_jsonl = tmp_path / "a.jsonl"
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    as_parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([alignx_record(**{"User-Generated Content": []})]), as_parquet)
    loaded = load_alignx(as_json)
    assert loaded == load_alignx(as_jsonl) and len(loaded) == 2
    first = loaded[0]
    assert isinstance(first, AlignXRecord) and first.chosen == "A slow roast."
    assert first.extra == {"profile": "Likes cooking"} and first.to_dict() == records[0]
    assert [r.prompt for r in iter_alignx(as_json, limit=1)] == ["What do you cook on Sundays?"]
    assert load_alignx(as_parquet)[0].user_generated_content == []
    assert history_texts(first) == ["The user respond Gardening for question Best hobby?",
                                    "The user respond Tea for question Tea or coffee?"]
    assert history_texts(first, limit=1) == ["The user respond Gardening for question Best hobby?"]


def test_alignx_missing_persona_fields_read_as_empty():
    record = parse_alignx({"prompt": "p", "chosen": "c", "rejected": "r", "Demographic Information": None})
    assert (record.demographic_information, record.user_generated_content, history_texts(record)) == ("", [], [])


@pytest.mark.parametrize("changes,message", [
    ({"chosen": None}, r"a.json: record 1: field 'chosen': must be a string"),
    ({"Preference Direction": ["high"]}, r"a.json: record 1: field 'Preference Direction': must be a list of numbers"),
    ({"User-Generated Content": [{"prompt": "p"}]},
     r"a.json: record 1: field 'User-Generated Content\[0\].comment': missing"),
    ({"Pair-wise Comparative Feedback": [{"prompt": "p", "chosen": "c", "rejected": 3,
                                          "Preference Direction": []}]},
     r"a.json: record 1: field 'Pair-wise Comparative Feedback\[0\].rejected': must be a string"),
    ({"Demographic Information": ["x"]}, r"a.json: record 1: field 'Demographic Information': must be a string"),
])
def test_alignx_validation_names_record_and_field(tmp_path, changes, message):
    path = dump(tmp_path / "a.json", [alignx_record(), alignx_record(**changes)])
    with pytest.raises(InputError, match=message):
        load_alignx(path)
