"""Download the public LaMP / LongLaMP files, verifying each with data.loaders before it appears.

    python scripts/download_data.py --benchmark lamp --task LaMP_4 --split train dev test --out data/raw
    python scripts/download_data.py --benchmark lamp --task LaMP_4 --time_based --out data/raw
    python scripts/download_data.py --benchmark longlamp --task LongLaMP_2 --split val --out data/raw
    # on a machine without network: install and verify files fetched elsewhere (same file names)
    python scripts/download_data.py --benchmark lamp --task LaMP_4 --split dev --from_dir ~/Downloads --out data/raw

Layout: <out>/<task>/<user|time>/<split>_questions.json and <split>_outputs.json for LaMP (test golds are
hidden, so there is no test_outputs.json), <out>/<task>/<user|temporal>/<split>.jsonl for LongLaMP (HF
dataset LongLaMP/LongLaMP, splits train/val/test; --from_dir also takes <split>.json or .parquet).
Every file is fetched into a temporary folder next to its target, parsed and validated in full, and only
then moved into place. Without network the script stops at once (5 s connect timeout, exit code 2).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable instead of scripts/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Sequence

from tqdm import tqdm

from data.cli import add_task_argument, bookkeeping_path, parse_args, run, write_config, writable_dir
from data.errors import InputError
from data.io import require_file
from data.loaders import iter_examples
from data.tasks import TaskSpec, get_task

LAMP_URL = "https://ciir.cs.umass.edu/downloads/LaMP"
HF_URL = "https://huggingface.co"
HF_DATASET = "LongLaMP/LongLaMP"
CONNECT_TIMEOUT = 5
NOT_DOWNLOADABLE = {
    "LaMP_2N": "the news-categorization files were replaced by movie tagging (LaMP_2) on 2024-03-20",
    "LaMP_6": "LaMP_6 is built from the licensed Avocado corpus: get the id-only question files from the "
              "LaMP site and run `python -m data.avocado.create_avocado_dataset`",
    "LongLaMP_1": "LongLaMP_1 is built from the licensed Avocado corpus and is not on the HF hub",
}


def split_name(benchmark: str, split: str) -> str:
    """LaMP calls the validation split "dev", LongLaMP "val"; either spelling is accepted."""
    if split in ("dev", "val"):
        return "dev" if benchmark == "lamp" else "val"
    return split


def lamp_names(split: str) -> list[str]:
    return [f"{split}_questions.json"] + ([] if split == "test" else [f"{split}_outputs.json"])


def lamp_url(task: str, split: str, name: str, time_based: bool) -> str:
    return f"{LAMP_URL}/{'time/' if time_based else ''}{task}/{split}/{name}"


def hf_config(spec: TaskSpec, time_based: bool) -> str:
    return spec.hf_config.replace("_user", "_temporal") if time_based else spec.hf_config


def check_online(url: str) -> None:
    """Fail at once, with one line, when the server cannot be reached."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=CONNECT_TIMEOUT).close()
    except urllib.error.HTTPError:
        return                                   # the server answered: it is reachable
    except OSError as err:                       # URLError, timeouts, refused connections
        raise InputError(f"cannot reach {url} ({getattr(err, 'reason', err)}): no network? Fetch the "
                         f"files elsewhere and pass --from_dir") from None


def download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT) as response, open(dest, "wb") as out, \
                tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B",
                     unit_scale=True, desc=dest.name) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise InputError(f"{url}: HTTP {err.code} {err.reason}") from None
    except OSError as err:
        raise InputError(f"{url}: download failed ({getattr(err, 'reason', err)})") from None


def download_longlamp(config: str, split: str, dest: Path) -> None:
    from datasets import load_dataset           # heavy import, only when downloading

    try:
        dataset = load_dataset(HF_DATASET, config, split=split)
    except (OSError, ValueError) as err:
        raise InputError(f"{HF_DATASET} {config} {split}: {err}") from None
    dataset.to_json(dest, lines=True, force_ascii=False)


def from_dir_file(from_dir: Path, names: Sequence[str]) -> Path:
    """The first of ``names`` present in --from_dir."""
    for name in names:
        if (from_dir / name).exists():
            break
    require_file(from_dir / name)      # a folder by that name is an error, not "file not found"
    return from_dir / name


def verify(task: str, questions: Path, outputs: Path | None = None) -> int:
    """Parse and validate a file (and its golds) with the loaders; the number of examples."""
    examples = iter_examples(questions, outputs, task=task)
    return sum(1 for _ in tqdm(examples, desc=f"verifying {questions.name}", unit=" examples"))


def fetch_split(args: argparse.Namespace, spec: TaskSpec, split: str, tmp: Path) -> list[tuple[Path, str]]:
    """Fetch one split into ``tmp`` and verify it; returns the files with a description of each."""
    if args.benchmark == "lamp":
        paths = [tmp / name for name in lamp_names(split)]
        for path in paths:
            if args.from_dir:
                shutil.copyfile(from_dir_file(args.from_dir, [path.name]), path)
            else:
                download(lamp_url(spec.name, split, path.name, args.time_based), path)
        count = verify(spec.name, paths[0], paths[1] if len(paths) > 1 else None)
        return [(paths[0], f"{count} questions")] + [(path, f"{count} golds") for path in paths[1:]]
    if args.from_dir:
        source = from_dir_file(args.from_dir, [f"{split}{ext}" for ext in (".jsonl", ".json", ".parquet")])
        path = tmp / source.name
        shutil.copyfile(source, path)
    else:
        path = tmp / f"{split}.jsonl"
        download_longlamp(hf_config(spec, args.time_based), split, path)
    return [(path, f"{verify(spec.name, path)} records")]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python scripts/download_data.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", choices=["lamp", "longlamp"], required=True)
    add_task_argument(parser)
    parser.add_argument("--split", nargs="+", choices=["train", "dev", "val", "test"],
                        default=["train", "dev", "test"],
                        help="splits to fetch; dev and val name the same split (default: all)")
    parser.add_argument("--time_based", action="store_true",
                        help="LaMP time-based files / LongLaMP *_temporal configs (default: user-based)")
    parser.add_argument("--out", type=writable_dir, default=Path("data/raw"), help="root folder (default: %(default)s)")
    parser.add_argument("--from_dir", type=Path,
                        help="take the files from this folder instead of the network (same file names)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    spec = get_task(args.task)
    if spec.benchmark.lower() != args.benchmark:
        raise InputError(f"{spec.name} is a {spec.benchmark} task, not --benchmark {args.benchmark}")
    if spec.name in NOT_DOWNLOADABLE:
        raise InputError(f"{spec.name} cannot be downloaded: {NOT_DOWNLOADABLE[spec.name]}")
    splits = list(dict.fromkeys(split_name(args.benchmark, split) for split in args.split))
    if args.from_dir is None:
        check_online(LAMP_URL if args.benchmark == "lamp" else HF_URL)
    setting = ("time" if args.benchmark == "lamp" else "temporal") if args.time_based else "user"
    target_dir = bookkeeping_path(args.out / spec.name / setting)   # a failed first split leaves no empty folder
    target_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        # Files appear in target_dir only once the whole split parsed and validated.
        with tempfile.TemporaryDirectory(dir=target_dir, prefix=".download-") as tmp:
            for path, description in fetch_split(args, spec, split, Path(tmp)):
                os.replace(path, target_dir / path.name)
                print(f"wrote {target_dir / path.name} ({description})")
    print(f"wrote {write_config(target_dir, args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
