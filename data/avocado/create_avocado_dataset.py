"""Build LaMP_6 (email subject generation) from the licensed Avocado corpus (spec lamp.md 11).

    python -m data.avocado.create_avocado_dataset --avocado_files_dir avocado-1.0.2/data/text \\
        --extract_addr /tmp/avocado --output_dir data/LaMP_6 \\
        --input_question_file_train train_questions.json --input_question_file_dev dev_questions.json \\
        --input_question_file_test test_questions.json [--time_based_separation]

The LaMP README's form, ``python data/avocado/create_avocado_dataset.py ...`` from the repository root,
runs the same.

The LaMP id-only question files name an email file in each question's "input" and in each profile
item's "text". Each zip of --avocado_files_dir holds <folder>/<email file>; the referenced emails are
extracted into a fresh temporary folder inside --extract_addr (removed afterwards) and parsed. Then
input = "Generate a subject for the following email: " + body, gold = subject, and every profile item
gets text = body and title = subject (its other fields, such as id and date, are kept).

Writes <split>_questions.json and <split>_outputs.json for train and dev, and test_questions.json as a
plain list (the original wraps it in {"task", "golds"}); test golds stay hidden as in the release. An
email missing from every zip is an error naming the question file, the question and the field.
"""
from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

if __package__ in (None, ""):  # run as a file (the LaMP README's command): import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[2])

import argparse
import email
import email.policy
import tempfile
import zipfile
from typing import Sequence

from tqdm import tqdm

from data.cli import parse_args, run, write_config, writable_dir
from data.errors import InputError, input_error
from data.io import read_json
from data.loaders import as_id, write_lamp_outputs, write_lamp_questions
from data.records import Example

TASK = "LaMP_6"
INPUT_PREFIX = "Generate a subject for the following email: "
SPLITS = ("train", "dev", "test")


def parse_email(path: Path) -> dict[str, str]:
    """Subject and stripped plain-text body of an RFC-822 file."""
    # The stdlib email package reads RFC-822 fully, so no extra dependency (the original used mail-parser).
    with open(path, "rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    try:
        content = body.get_content() if body is not None else ""
    except (LookupError, UnicodeError):          # unknown or wrong charset: decode the bytes leniently
        content = (body.get_payload(decode=True) or b"").decode("utf-8", errors="replace")
    return {"subject": str(message["subject"] or ""), "content": content.strip()}


def read_id_questions(path: Path, time_based: bool) -> list[dict]:
    """An id-only question file: questions whose input and profile texts are email file names."""
    questions = read_json(path)
    if not isinstance(questions, list):
        raise input_error(path, "expected a JSON list of questions")
    for i, question in enumerate(questions):
        if not isinstance(question, dict):
            raise input_error(path, "must be an object", record=f"#{i}")
        qid = question.get("id", f"#{i}")
        for field in ("id", "input", "profile", *(["user_id"] if time_based else [])):
            if field not in question:
                raise input_error(path, "missing", record=qid, field=field)
        if not isinstance(question["input"], str):
            raise input_error(path, "must be an email file name", record=qid, field="input")
        if not isinstance(question["profile"], list) or not question["profile"]:
            raise input_error(path, "must be a non-empty list", record=qid, field="profile")
        for j, item in enumerate(question["profile"]):
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise input_error(path, "must be an email file name", record=qid, field=f"profile[{j}].text")
    return questions


def collect_emails(zips_dir: Path, extract_root: Path, names: set[str]) -> dict[str, dict[str, str]]:
    """Parse every email named in ``names`` from the zips, keyed by file name."""
    if not zips_dir.is_dir():
        raise input_error(zips_dir, "not a folder")
    zips = sorted(zips_dir.glob("*.zip"))
    if not zips:
        raise input_error(zips_dir, "no .zip files")
    extract_root.mkdir(parents=True, exist_ok=True)
    emails = {}
    for zip_path in tqdm(zips, desc="reading Avocado zips", unit=" zip"):
        try:
            with zipfile.ZipFile(zip_path) as archive, \
                    tempfile.TemporaryDirectory(dir=extract_root, prefix="avocado-") as tmp:
                for member in archive.infolist():
                    name = PurePosixPath(member.filename).name
                    if not member.is_dir() and name in names:
                        emails[name] = parse_email(Path(archive.extract(member, tmp)))
        except zipfile.BadZipFile as err:
            raise input_error(zip_path, f"not a zip file ({err})") from None
    return emails


def build_split(path: Path, questions: list[dict], emails: dict, time_based: bool,
                zips_dir: Path) -> list[Example]:
    def find(name: str, qid: str, field: str) -> dict[str, str]:
        if name not in emails:
            raise input_error(path, f"email file {name!r} is in no zip of {zips_dir}", record=qid, field=field)
        return emails[name]

    examples = []
    for question in questions:
        qid = as_id(path, question["id"], question["id"], "id")
        mail = find(question["input"], qid, "input")
        profile = []
        for j, item in enumerate(question["profile"]):
            item_mail = find(item["text"], qid, f"profile[{j}].text")
            profile.append({**item, "text": item_mail["content"], "title": item_mail["subject"]})
        user_id = as_id(path, question["user_id"], qid, "user_id") if time_based else None
        extra = {k: v for k, v in question.items() if k not in ("id", "input", "profile", "user_id")}
        examples.append(Example(id=qid, input=INPUT_PREFIX + mail["content"], profile=profile,
                                target=mail["subject"], user_id=user_id, task=TASK, extra=extra))
    return examples


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.avocado.create_avocado_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avocado_files_dir", type=Path, required=True,
                        help="folder of Avocado zip files (avocado-1.0.2/data/text)")
    parser.add_argument("--extract_addr", type=Path, required=True,
                        help="folder for temporary extraction (a fresh subfolder is made and removed)")
    parser.add_argument("--output_dir", type=writable_dir, required=True)
    for split in SPLITS:
        parser.add_argument(f"--input_question_file_{split}", type=Path,
                            help=f"LaMP id-only {split} question file")
    parser.add_argument("--time_based_separation", action="store_true",
                        help="time-based files: copy each question's user_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    files = {split: getattr(args, f"input_question_file_{split}") for split in SPLITS}
    files = {split: path for split, path in files.items() if path is not None}
    if not files:
        raise InputError("give at least one of --input_question_file_train/_dev/_test")
    questions = {split: read_id_questions(path, args.time_based_separation) for split, path in files.items()}
    names = {name for split in questions.values() for question in split
             for name in [question["input"], *(item["text"] for item in question["profile"])]}
    emails = collect_emails(args.avocado_files_dir, args.extract_addr, names)
    # Every split is built (and every email found) before anything is written.
    built = {split: build_split(files[split], questions[split], emails, args.time_based_separation,
                                args.avocado_files_dir) for split in files}
    written = []
    for split, examples in built.items():
        written.append(write_lamp_questions(args.output_dir / f"{split}_questions.json", examples))
        if split != "test":
            written.append(write_lamp_outputs(args.output_dir / f"{split}_outputs.json", TASK, examples))
    written.append(write_config(args.output_dir, args))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
