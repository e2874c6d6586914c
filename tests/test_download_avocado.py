"""scripts/download_data.py (verification on local files, never the network) and the Avocado builder."""
import json
import subprocess
import sys
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.errors import InputError
from data.loaders import load_examples
from data.tasks import get_task
from scripts.download_data import hf_config, lamp_url, split_name, verify

REPO = Path(__file__).resolve().parents[1]


def run_module(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True)


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def dump(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def lamp_question(qid):
    return {"id": qid, "input": f"Generate a headline for the following article: {qid}",
            "profile": [{"id": f"{qid}-p", "title": "t", "text": "x", "date": "2020-01-01"}]}


@pytest.fixture
def fetched(tmp_path):
    """Files as the LaMP server names them, 'downloaded' by hand into one folder."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    for split, ids in (("train", ["a", "b", "c"]), ("dev", ["d", "e"]), ("test", ["f"])):
        dump(folder / f"{split}_questions.json", [lamp_question(i) for i in ids])
        if split != "test":
            dump(folder / f"{split}_outputs.json",
                 {"task": "LaMP_4", "golds": [{"id": i, "output": i.upper()} for i in ids]})
    return folder


# ----------------------------------------------------------------------------- download_data

def test_urls_configs_and_split_names():
    assert lamp_url("LaMP_4", "dev", "dev_outputs.json", False) == \
        "https://ciir.cs.umass.edu/downloads/LaMP/LaMP_4/dev/dev_outputs.json"
    assert lamp_url("LaMP_3", "train", "train_questions.json", True) == \
        "https://ciir.cs.umass.edu/downloads/LaMP/time/LaMP_3/train/train_questions.json"
    assert hf_config(get_task("LongLaMP_3"), False) == "product_review_user"
    assert hf_config(get_task("LongLaMP_4"), True) == "topic_writing_temporal"
    assert (split_name("lamp", "val"), split_name("longlamp", "dev"), split_name("lamp", "test")) == \
        ("dev", "val", "test")


def test_help():
    result = run_module("scripts.download_data", "--help")
    assert result.returncode == 0 and "--from_dir" in result.stdout and "--time_based" in result.stdout


def test_lamp_files_from_dir_are_verified_and_installed(tmp_path, fetched):
    out = tmp_path / "raw"
    result = run_module("scripts.download_data", "--benchmark", "lamp", "--task", "lamp4", "--from_dir", fetched,
                        "--out", out)
    assert result.returncode == 0, result.stderr
    assert files_under(out) == ["LaMP_4/user/config.json", "LaMP_4/user/dev_outputs.json",
                                "LaMP_4/user/dev_questions.json", "LaMP_4/user/test_questions.json",
                                "LaMP_4/user/train_outputs.json", "LaMP_4/user/train_questions.json"]
    assert f"wrote {out / 'LaMP_4/user/train_questions.json'} (3 questions)" in result.stdout
    assert f"wrote {out / 'LaMP_4/user/dev_outputs.json'} (2 golds)" in result.stdout
    examples = load_examples(out / "LaMP_4/user/dev_questions.json", out / "LaMP_4/user/dev_outputs.json")
    assert [(e.id, e.target) for e in examples] == [("d", "D"), ("e", "E")]


def test_gitlamp_from_dir(tmp_path, shared_data):
    result = run_module("scripts.download_data", "--benchmark", "lamp", "--task", "LaMP_4", "--split", "dev",
                        "--time_based", "--from_dir", shared_data / "gitlamp", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(32 questions)" in result.stdout and (tmp_path / "LaMP_4/time/dev_outputs.json").is_file()


@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
def test_longlamp_records_from_dir(tmp_path, ext):
    rows = [{"reviewerId": f"r{i}", "input": "Generate the review text ...", "output": "Nice.",
             "profile": [{"id": "v", "overall": 4.0, "summary": "s", "description": "d", "reviewText": "t"}]}
            for i in range(3)]
    folder = tmp_path / "hf"
    folder.mkdir()
    if ext == ".jsonl":
        (folder / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), folder / "val.parquet")
    result = run_module("scripts.download_data", "--benchmark", "longlamp", "--task", "LongLaMP_3", "--split", "dev",
                        "--from_dir", folder, "--out", tmp_path / "raw")
    assert result.returncode == 0, result.stderr
    assert f"LongLaMP_3/user/val{ext} (3 records)" in result.stdout
    assert files_under(tmp_path / "raw") == ["LongLaMP_3/user/config.json", f"LongLaMP_3/user/val{ext}"]


def test_verify_counts_and_rejects(tmp_path, fetched):
    assert verify("LaMP_4", fetched / "train_questions.json", fetched / "train_outputs.json") == 3
    with pytest.raises(InputError, match=r"test_questions.json: record .f.: field .id.: no gold in dev_outputs.json"):
        verify("LaMP_4", fetched / "test_questions.json", fetched / "dev_outputs.json")


def test_a_bad_file_exits_2_and_installs_nothing(tmp_path, fetched):
    broken = dump(fetched / "dev_questions.json", [lamp_question("d"), {"id": "e", "input": "x"}])
    out = tmp_path / "raw"
    result = run_module("scripts.download_data", "--benchmark", "lamp", "--task", "LaMP_4", "--split", "dev",
                        "--from_dir", fetched, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(f"{broken.name}: record 'e': field 'profile': missing")
    assert files_under(out) == []


@pytest.mark.parametrize("args,message", [
    (["--benchmark", "lamp", "--task", "LaMP_4", "--split", "dev", "--from_dir", "missing_dir"],
     "missing_dir/dev_questions.json: file not found"),
    (["--benchmark", "longlamp", "--task", "LaMP_4"], "LaMP_4 is a LaMP task, not --benchmark longlamp"),
    (["--benchmark", "lamp", "--task", "LaMP_6"], "LaMP_6 cannot be downloaded: LaMP_6 is built from the licensed"),
    (["--benchmark", "longlamp", "--task", "LongLaMP_1"], "LongLaMP_1 cannot be downloaded"),
])
def test_bad_requests_exit_2(tmp_path, args, message):
    result = run_module("scripts.download_data", *args, "--out", tmp_path / "raw")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert files_under(tmp_path) == []


# ----------------------------------------------------------------------------- Avocado

def email_bytes(subject, body):
    message = EmailMessage()
    message["From"] = "someone@avocado.example"
    message["Subject"] = subject
    message.set_content(body)
    return message.as_bytes()


@pytest.fixture
def avocado(tmp_path):
    """Two zips of RFC-822 emails under <zip>/<folder>/<file>, and id-only LaMP question files."""
    corpus = tmp_path / "text"
    corpus.mkdir()
    emails = {f"00{i}-EM.txt": (f"Subject {i}", f"Body of email {i}.\n") for i in range(1, 7)}
    for zip_name, names in (("001.zip", list(emails)[:3]), ("002.zip", list(emails)[3:])):
        with zipfile.ZipFile(corpus / zip_name, "w") as archive:
            for name in names:
                archive.writestr(f"{zip_name[:3]}/{name}", email_bytes(*emails[name]))
    questions = tmp_path / "questions"
    questions.mkdir()
    dump(questions / "train_questions.json", [
        {"id": "q1", "user_id": "u1", "input": "001-EM.txt",
         "profile": [{"id": "p1", "text": "002-EM.txt", "date": "2001-02-03"},
                     {"id": "p2", "text": "004-EM.txt", "date": "2001-02-04"}]}])
    dump(questions / "dev_questions.json", [
        {"id": "q2", "user_id": "u2", "input": "003-EM.txt", "profile": [{"id": "p3", "text": "005-EM.txt"}]}])
    dump(questions / "test_questions.json", [
        {"id": "q3", "user_id": "u3", "input": "006-EM.txt", "profile": [{"id": "p4", "text": "001-EM.txt"}]}])
    return tmp_path


def avocado_args(root, *extra):
    q = root / "questions"
    return ["--avocado_files_dir", root / "text", "--extract_addr", root / "extract", "--output_dir", root / "out",
            "--input_question_file_train", q / "train_questions.json", "--input_question_file_dev",
            q / "dev_questions.json", "--input_question_file_test", q / "test_questions.json", *extra]


def test_avocado_builds_lamp6(avocado):
    result = run_module("data.avocado.create_avocado_dataset", *avocado_args(avocado, "--time_based_separation"))
    assert result.returncode == 0, result.stderr
    out = avocado / "out"
    train = load_examples(out / "train_questions.json", out / "train_outputs.json")
    (example,) = train
    assert example.task == "LaMP_6" and example.user_id == "u1" and example.target == "Subject 1"
    assert example.input == "Generate a subject for the following email: Body of email 1."
    assert example.profile == [
        {"id": "p1", "text": "Body of email 2.", "date": "2001-02-03", "title": "Subject 2"},
        {"id": "p2", "text": "Body of email 4.", "date": "2001-02-04", "title": "Subject 4"}]
    test = json.loads((out / "test_questions.json").read_text())
    assert isinstance(test, list) and test[0]["id"] == "q3" and "output" not in test[0]
    assert not (out / "test_outputs.json").exists()
    assert load_examples(out / "dev_questions.json", out / "dev_outputs.json")[0].target == "Subject 3"
    assert list((avocado / "extract").iterdir()) == []      # the temporary extraction folder is gone


def test_avocado_runs_as_a_file_as_in_the_lamp_readme(avocado):
    script = Path("data/avocado/create_avocado_dataset.py")
    result = subprocess.run([sys.executable, script, *map(str, avocado_args(avocado))], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"wrote {avocado / 'out/dev_outputs.json'}" in result.stdout
    (example,) = load_examples(avocado / "out/train_questions.json", avocado / "out/train_outputs.json")
    assert (example.id, example.target, example.profile[1]["title"]) == ("q1", "Subject 1", "Subject 4")
    help_text = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True)
    assert help_text.returncode == 0 and "--avocado_files_dir" in help_text.stdout


def test_avocado_without_time_based_drops_user_id(avocado):
    assert run_module("data.avocado.create_avocado_dataset", *avocado_args(avocado)).returncode == 0
    assert "user_id" not in json.loads((avocado / "out/train_questions.json").read_text())[0]


def test_avocado_missing_email_names_file_and_question(avocado):
    dev = dump(avocado / "questions/dev_questions.json",
               [{"id": "q2", "input": "003-EM.txt", "profile": [{"id": "p3", "text": "404-EM.txt"}]}])
    result = run_module("data.avocado.create_avocado_dataset", *avocado_args(avocado))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {dev}: record 'q2': field 'profile[0].text': email file '404-EM.txt' is in no zip of "
        f"{avocado / 'text'}")
    assert not (avocado / "out").exists() and list((avocado / "extract").iterdir()) == []


def test_avocado_help():
    result = run_module("data.avocado.create_avocado_dataset", "--help")
    assert result.returncode == 0 and "--time_based_separation" in result.stdout
