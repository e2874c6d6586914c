"""python -m data.convert: LaMP / LongLaMP <-> OPPU per-user layout, lossless round trips."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.convert import group_users, main, select_targets
from data.loaders import load_examples
from data.tasks import get_task, list_tasks

REPO = Path(__file__).resolve().parents[1]


def convert(*args, ok=True):
    result = subprocess.run([sys.executable, "-m", "data.convert", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def dump(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def by_id(records):
    return sorted(records, key=lambda record: record["id"])


def item(i, **extra):
    return {"id": f"p{i}", "title": f"title {i}", "text": f"text {i}", "date": "2020-01-01", **extra}


@pytest.fixture
def lamp_dir(tmp_path):
    """Three users: u1 asks two questions on one profile, u2's history grows between its two questions."""
    questions = [
        {"id": "q1", "user_id": "u1", "input": "Generate a headline for the following article: a",
         "profile": [item(1, score=0.5), item(2)], "source": "web"},
        {"id": "q2", "user_id": "u1", "input": "Generate a headline for the following article: b",
         "profile": [item(1, score=0.5), item(2)]},
        {"id": "q3", "user_id": "u2", "input": "Generate a headline for the following article: c",
         "profile": [item(3), item(4)]},
        {"id": "q4", "user_id": "u2", "input": "Generate a headline for the following article: d",
         "profile": [item(3), item(4), item(5)]},
        {"id": "q5", "user_id": "u3", "input": "Generate a headline for the following article: e",
         "profile": [item(6)]},
    ]
    outputs = {"task": "LaMP_4", "golds": [{"id": f"q{i}", "output": f"headline {i}"} for i in range(1, 6)]}
    dump(tmp_path / "dev_questions.json", questions)
    dump(tmp_path / "dev_outputs.json", outputs)
    return tmp_path


@pytest.mark.parametrize("command", [[], ["to-oppu"], ["to-lamp"]])
def test_help(command):
    result = convert(*command, "--help")
    assert "usage: python -m data.convert" in result.stdout


def test_lamp_to_oppu_layout(lamp_dir):
    convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--outputs", lamp_dir / "dev_outputs.json",
            "--output_dir", lamp_dir / "oppu", "--num_users", 1)
    top = load(lamp_dir / "oppu/user_top_100_history.json")
    # u2 has the longest history (3 distinct items) and keeps one entry per profile.
    assert [(u["user_id"], [q["id"] for q in u["query"]]) for u in top] == [("u2", ["q3"]), ("u2", ["q4"])]
    assert top[1]["query"] == [{"id": "q4", "input": "Generate a headline for the following article: d",
                                "gold": "headline 4"}]
    assert load(lamp_dir / "oppu/user_top_100_history_label.json") == {
        "task": "LaMP_4", "golds": [{"id": "q3", "output": "headline 3"}, {"id": "q4", "output": "headline 4"}]}
    others = load(lamp_dir / "oppu/user_others.json")
    assert [(u["user_id"], [q["id"] for q in u["query"]]) for u in others] == [("u1", ["q1", "q2"]), ("u3", ["q5"])]
    assert others[0]["query"][0]["source"] == "web" and others[0]["profile"][0]["score"] == 0.5

    # Converting questions without golds into the same folder removes the earlier run's label file.
    convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--task", "LaMP_4",
            "--output_dir", lamp_dir / "oppu", "--num_users", 1)
    assert not (lamp_dir / "oppu/user_top_100_history_label.json").exists()
    assert load(lamp_dir / "oppu/config.json")["args"]["num_users"] == 1


def test_all_users_are_targets_with_num_users_all(lamp_dir):
    dev_users = {q["user_id"] for q in load(lamp_dir / "dev_questions.json")}
    convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--outputs", lamp_dir / "dev_outputs.json",
            "--output_dir", lamp_dir / "oppu", "--num_users", "all", "--select", "first")
    assert {u["user_id"] for u in load(lamp_dir / "oppu/user_top_100_history.json")} == dev_users
    assert len(dev_users) > 1 and load(lamp_dir / "oppu/user_others.json") == []


def test_others_from_another_file(lamp_dir):
    """--others: the non-target users come from another split (a target user found there is left out)."""
    train = [{"id": "t1", "user_id": "u9", "input": "Generate a headline for the following article: x",
              "profile": [item(7)]},
             {"id": "t2", "user_id": "u2", "input": "Generate a headline for the following article: y",
              "profile": [item(8)]}]
    dump(lamp_dir / "train_questions.json", train)
    dump(lamp_dir / "train_outputs.json", {"task": "LaMP_4", "golds": [{"id": "t1", "output": "h"},
                                                                       {"id": "t2", "output": "h"}]})
    convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--outputs", lamp_dir / "dev_outputs.json",
            "--output_dir", lamp_dir / "oppu", "--num_users", 2, "--select", "first",
            "--others", lamp_dir / "train_questions.json", "--others_outputs", lamp_dir / "train_outputs.json")
    assert [u["user_id"] for u in load(lamp_dir / "oppu/user_top_100_history.json")] == ["u1", "u2", "u2"]
    others = load(lamp_dir / "oppu/user_others.json")
    assert [(u["user_id"], [q["id"] for q in u["query"]]) for u in others] == [("u9", ["t1"])]
    assert others[0]["query"][0]["gold"] == "h"
    result = convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--output_dir", lamp_dir / "o2",
                     "--others_outputs", lamp_dir / "train_outputs.json", ok=False)
    assert result.returncode == 2 and "--others_outputs needs --others" in result.stderr


def test_lamp_oppu_round_trip_keeps_every_record_and_field(lamp_dir):
    questions, outputs = lamp_dir / "dev_questions.json", lamp_dir / "dev_outputs.json"
    convert("to-oppu", "--questions", questions, "--outputs", outputs, "--output_dir", lamp_dir / "oppu",
            "--num_users", 2, "--select", "random", "--seed", 3)
    convert("to-lamp", "--input_dir", lamp_dir / "oppu", "--output_dir", lamp_dir / "back", "--name", "dev")
    back_q, back_o = lamp_dir / "back/dev_questions.json", lamp_dir / "back/dev_outputs.json"
    assert sorted(load_examples(back_q, back_o), key=lambda e: e.id) == load_examples(questions, outputs)
    assert by_id(load(back_q)) == by_id(load(questions))
    assert load(back_o)["task"] == "LaMP_4" and by_id(load(back_o)["golds"]) == by_id(load(outputs)["golds"])


def test_oppu_lamp_round_trip_keeps_user_fields(tmp_path):
    users = [{"user_id": "u1", "cluster": 3, "profile": [item(1), item(2)],
              "query": [{"id": "q1", "input": "in 1", "gold": "g1", "note": "n"},
                        {"id": "q2", "input": "in 2", "gold": "g2"}]}]
    others = [{"user_id": "u2", "profile": [item(3)], "query": [{"id": "q3", "input": "in 3", "gold": "g3"}]}]
    oppu = tmp_path / "oppu"
    oppu.mkdir()
    dump(oppu / "user_top_100_history.json", users)
    dump(oppu / "user_top_100_history_label.json",
         {"task": "LaMP_4", "golds": [{"id": "q1", "output": "g1"}, {"id": "q2", "output": "g2"}]})
    dump(oppu / "user_others.json", others)
    convert("to-lamp", "--input_dir", oppu, "--output_dir", tmp_path / "lamp")
    convert("to-oppu", "--questions", tmp_path / "lamp/oppu_questions.json", "--outputs",
            tmp_path / "lamp/oppu_outputs.json", "--output_dir", tmp_path / "again", "--num_users", 1)
    for name in ("user_top_100_history.json", "user_top_100_history_label.json", "user_others.json"):
        assert load(tmp_path / "again" / name) == load(oppu / name)
    convert("to-lamp", "--input_dir", oppu, "--output_dir", tmp_path / "target", "--users", "target")
    assert [q["id"] for q in load(tmp_path / "target/oppu_questions.json")] == ["q1", "q2"]


def test_gitlamp_round_trip(shared_data, tmp_path):
    questions, outputs = shared_data / "gitlamp/dev_questions.json", shared_data / "gitlamp/dev_outputs.json"
    convert("to-oppu", "--questions", questions, "--outputs", outputs, "--output_dir", tmp_path / "oppu",
            "--num_users", 10)
    top = load(tmp_path / "oppu/user_top_100_history.json")
    # No user_id in the user-based split: each question is its own user, keyed by the question id.
    assert len(top) == 10 and all(u["user_id"] == u["query"][0]["id"] for u in top)
    lengths = sorted((len(u["profile"]) for u in load(tmp_path / "oppu/user_others.json")), reverse=True)
    assert min(len(u["profile"]) for u in top) >= lengths[0]
    convert("to-lamp", "--input_dir", tmp_path / "oppu", "--output_dir", tmp_path / "back", "--no_user_id")
    back_q, back_o = tmp_path / "back/oppu_questions.json", tmp_path / "back/oppu_outputs.json"
    assert sorted(load_examples(back_q, back_o), key=lambda e: e.id) == load_examples(questions, outputs)
    assert by_id(load(back_q)) == by_id(load(questions))
    assert by_id(load(back_o)["golds"]) == by_id(load(outputs)["golds"])


def test_gitlamp_long_round_trip(shared_data, tmp_path):
    rows = shared_data / "gitlamp_long/val.json"
    convert("to-oppu", "--questions", rows, "--task", "LongLaMP_2", "--output_dir", tmp_path / "oppu",
            "--num_users", 8, "--select", "first")
    top = load(tmp_path / "oppu/user_top_100_history.json")
    assert [u["user_name"] for u in top] == [r["name"] for r in load(rows)[:8]]
    assert set(top[0]["query"][0]) == {"id", "input", "gold"}
    convert("to-lamp", "--input_dir", tmp_path / "oppu", "--output_dir", tmp_path / "back", "--name", "val")
    back = tmp_path / "back/val.json"
    assert by_id(load(back)) == by_id(load(rows))
    assert sorted(load_examples(back, task="LongLaMP_2"), key=lambda e: e.id) == load_examples(rows, task="LongLaMP_2")


@pytest.mark.parametrize("task", [spec.name for spec in list_tasks()])
def test_every_task_of_the_sample_round_trips(tmp_path, task):
    folder, spec = REPO / "data/sample" / task, get_task(task)
    if spec.benchmark == "LaMP":
        files = [folder / "dev_questions.json", folder / "dev_outputs.json"]
        source = ["--questions", files[0], "--outputs", files[1]]
        back = [tmp_path / "back/oppu_questions.json", tmp_path / "back/oppu_outputs.json"]
    else:
        files, back = [folder / "val.json"], [tmp_path / "back/oppu.json"]
        source = ["--questions", files[0], "--task", task]
    if not files[0].is_file():
        pytest.skip(f"no sample for {task}")
    without_user_ids = spec.benchmark == "LaMP" and "user_id" not in load(files[0])[0]
    main(["to-oppu", *map(str, source), "--output_dir", str(tmp_path / "oppu"), "--num_users", "5"])
    main(["to-lamp", "--input_dir", str(tmp_path / "oppu"), "--output_dir", str(tmp_path / "back"),
          *(["--no_user_id"] if without_user_ids else [])])
    original = load_examples(*files, task=task)
    assert sorted(load_examples(*back, task=task), key=lambda e: e.id) == sorted(original, key=lambda e: e.id)
    assert by_id(load(back[0])) == by_id(load(files[0]))
    if len(files) == 2:
        assert by_id(load(back[1])["golds"]) == by_id(load(files[1])["golds"])


def test_longlamp_rows_without_ids_round_trip(tmp_path):
    rows = [{"author": f"a{i % 2}", "input": f"Generate the content for a reddit post s{i}",
             "output": f"content {i}", "subreddit": "r/x",
             "profile": [{"id": f"i{i}", "summary": "s", "content": "c"}]} for i in range(3)]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    original = load_examples(path, task="LongLaMP_4")
    convert("to-oppu", "--questions", path, "--task", "topic_writing", "--output_dir", tmp_path / "oppu")
    convert("to-lamp", "--input_dir", tmp_path / "oppu", "--output_dir", tmp_path / "back")
    back = load(tmp_path / "back/oppu.json")
    # Derived ids (<user>-<row index>) are written out; every other field is unchanged.
    assert sorted(back, key=lambda r: r["input"]) == [{**r, "id": f"{r['author']}-{i}"} for i, r in enumerate(rows)]
    assert sorted(load_examples(tmp_path / "back/oppu.json", task="LongLaMP_4"), key=lambda e: e.id) == \
        sorted(original, key=lambda e: e.id)


def test_split_without_golds_has_no_label_file(lamp_dir):
    convert("to-oppu", "--questions", lamp_dir / "dev_questions.json", "--task", "LaMP_4",
            "--output_dir", lamp_dir / "oppu")
    assert not (lamp_dir / "oppu/user_top_100_history_label.json").exists()
    assert "gold" not in load(lamp_dir / "oppu/user_top_100_history.json")[0]["query"][0]
    result = convert("to-lamp", "--input_dir", lamp_dir / "oppu", "--task", "LaMP_4", "--output_dir", lamp_dir / "b")
    assert "oppu_outputs.json" not in result.stdout and (lamp_dir / "b/oppu_questions.json").is_file()


def test_selection_rules():
    from data.records import Example

    spec = get_task("LaMP_4")
    examples = [Example(id=f"q{n}", input="x", user_id=f"u{n}", profile=[item(i) for i in range(n)])
                for n in (2, 5, 1, 5, 3)]
    entries = group_users(examples, spec)
    assert [e["user_id"] for e in entries] == ["u2", "u5", "u1", "u3"]     # u5's questions share a profile
    assert select_targets(entries, "user_id", 2, "longest", 0) == {"u5", "u3"}
    assert select_targets(entries, "user_id", 3, "longest", 0) == {"u5", "u3", "u2"}
    assert select_targets(entries, "user_id", 2, "first", 0) == {"u2", "u5"}
    chosen = select_targets(entries, "user_id", 2, "random", 7)
    assert chosen == select_targets(entries, "user_id", 2, "random", 7) and len(chosen) == 2


@pytest.mark.parametrize("case", ["num_users", "missing gold", "unknown task"])
def test_bad_input_exits_2_and_leaves_no_file(lamp_dir, case):
    out = lamp_dir / "out"
    args = ["to-oppu", "--questions", lamp_dir / "dev_questions.json", "--output_dir", out]
    if case == "num_users":
        args += ["--outputs", lamp_dir / "dev_outputs.json", "--num_users", 0]
        expected = "error: --num_users must be at least 1, got 0"
    elif case == "missing gold":
        golds = dump(lamp_dir / "few.json", {"task": "LaMP_4", "golds": [{"id": "q1", "output": "x"}]})
        args += ["--outputs", golds]
        expected = f"error: {lamp_dir / 'dev_questions.json'}: record 'q2': field 'id': no gold in few.json " \
                   f"for questions 'q2', 'q3', 'q4'"
    else:
        args += ["--task", "LaMP_44"]
        expected = "argument --task: unknown task 'LaMP_44'"
    result = convert(*args, ok=False)
    assert result.returncode == 2 and expected in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and not out.exists()


def test_to_lamp_on_a_folder_that_is_not_oppu(tmp_path):
    result = convert("to-lamp", "--input_dir", tmp_path, "--task", "LaMP_4", "--output_dir", tmp_path / "o", ok=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'user_top_100_history.json'}: file not found"
