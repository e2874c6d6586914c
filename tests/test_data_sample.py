"""data.make_sample and the committed data/sample: deterministic, complete, in the official formats, and
with planted user styles that the profile reveals."""
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data.loaders import load_examples
from data.make_sample import DOMAINS, PROFILE_SIZES, SAMPLE_DIR, SPLITS, main, write_sample
from data.tasks import list_tasks

REPO_ROOT = Path(__file__).resolve().parent.parent
DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")
DOMAIN_NOUNS = {noun for nouns in DOMAINS.values() for noun in nouns}


def sample_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def split_records(spec, split):
    """(questions as {id, user_id, input, profile}, {id: gold}) of one task split of the committed sample."""
    folder = SAMPLE_DIR / spec.name
    if spec.benchmark == "LaMP":
        golds = read(folder / f"{split}_outputs.json")
        assert golds["task"] == spec.name
        return read(folder / f"{split}_questions.json"), {g["id"]: g["output"] for g in golds["golds"]}
    rows = read(folder / f"{split}.json")
    assert all(set(row) == {spec.user_id_field, "id", "input", "output", "profile"} for row in rows)
    return ([{**row, "user_id": row[spec.user_id_field]} for row in rows],
            {row["id"]: row["output"] for row in rows})


ALL_SPLITS = [(spec, split) for spec in list_tasks() for split in SPLITS[spec.benchmark]]
SPLIT_IDS = [f"{spec.name}-{split}" for spec, split in ALL_SPLITS]


def test_regenerating_gives_the_committed_files_byte_for_byte(tmp_path):
    write_sample(tmp_path)
    assert sample_files(tmp_path) == sample_files(SAMPLE_DIR)


def test_sample_is_small_and_labelled_synthetic():
    assert sum(len(data) for data in sample_files(SAMPLE_DIR).values()) < 3_000_000
    assert "synthetic: true" in (SAMPLE_DIR / "README.md").read_text()


@pytest.mark.parametrize("spec,split", ALL_SPLITS, ids=SPLIT_IDS)
def test_records_have_the_fields_their_task_needs(spec, split):
    questions, golds = split_records(spec, split)
    assert len(questions) == 24 and set(golds) == {q["id"] for q in questions}
    for question in questions:
        assert question["user_id"] and spec.query(question["input"])
        assert spec.input_template.split("{")[0] in question["input"]
        profile = question["profile"]
        assert PROFILE_SIZES[0] <= len(profile) <= PROFILE_SIZES[1]
        assert len({item["id"] for item in profile}) == len(profile)
        for item in profile:
            assert all(isinstance(item[field], str) and item[field] for field in spec.item_fields)
            if spec.date_field == "date":
                assert DATE.match(item["date"])
            elif spec.date_field == "year":
                assert isinstance(item["year"], int)
        if spec.labels:
            assert golds[question["id"]] in spec.labels


@pytest.mark.parametrize("spec,split", ALL_SPLITS, ids=SPLIT_IDS)
def test_sample_loads_with_the_loader(spec, split):
    folder = SAMPLE_DIR / spec.name
    if spec.benchmark == "LaMP":
        examples = load_examples(folder / f"{split}_questions.json", folder / f"{split}_outputs.json")
    else:
        examples = load_examples(folder / f"{split}.json", task=spec.name)
    questions, golds = split_records(spec, split)
    assert [e.id for e in examples] == [q["id"] for q in questions]
    assert all(e.task == spec.name and e.target == golds[e.id] and e.profile and e.user_id for e in examples)


@pytest.mark.parametrize("spec,split", ALL_SPLITS, ids=SPLIT_IDS)
def test_the_profile_reveals_the_gold(spec, split):
    """What a method can only learn from the profile: the favourite label, the typical score, the
    signature that starts every output, or (LaMP_1) the domain of the user's papers."""
    questions, golds = split_records(spec, split)
    for question in questions:
        gold, profile = golds[question["id"]], question["profile"]
        outputs = [str(item[spec.item_output_field]) for item in profile]
        if spec.kind == "regression":
            assert str(round(statistics.median(int(o) for o in outputs))) == gold
        elif spec.kind == "classification" and set(outputs) <= set(spec.labels):
            assert Counter(outputs).most_common(1)[0][0] == gold
        elif spec.kind == "classification":     # LaMP_1: the profile holds papers, not labels
            references = re.findall(r'"(.*?)"', question["input"])[1:3]
            profile_words = set(" ".join(spec.document(item) for item in profile).lower().split())
            shared = [len(set(ref.lower().split()) & profile_words & DOMAIN_NOUNS) for ref in references]
            assert shared[spec.labels.index(gold)] > shared[1 - spec.labels.index(gold)]
        else:
            signature = os.path.commonprefix(outputs)
            assert len(signature) >= 5 and gold.startswith(signature)


def test_cli_writes_where_told_and_the_seed_changes_the_text(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "s1"), "--seed", "1", "--users", "2"]) == 0
    assert "to " + str(tmp_path / "s1") in capsys.readouterr().out
    first = read(tmp_path / "s1" / "LaMP_4" / "dev_questions.json")
    assert len(first) == 2 and first != read(SAMPLE_DIR / "LaMP_4" / "dev_questions.json")[:2]


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "data.make_sample", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--seed" in out and "SYNTHETIC" in out
