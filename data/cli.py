"""Command-line plumbing shared by every entry script: error handling, config.json, shared flags.

Each script defines ``make_parser()`` and ``main(argv=None)`` and ends with
``if __name__ == "__main__": raise SystemExit(run(main))``.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import subprocess
import sys
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Callable, Iterator, NoReturn, Sequence

from data.errors import InputError
from data.io import atomic_write_bytes, atomic_write_json, check_writable

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("lampkit")


# Run bookkeeping (run.log, config.json, the folders made for them) noted by this process: a run that fails
# before it writes any other output undoes it, so a model that does not load leaves nothing behind and an
# earlier run's config.json is not left overwritten by a run that never happened.
@dataclass
class _Bookkeeping:
    path: Path
    folder_before: frozenset[str]      # entries of its folder before the run
    previous: bytes | None = None      # the file's content before the run, when it existed


_bookkeeping: list[_Bookkeeping] = []


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a script's main; bad input becomes one line on stderr and exit code 2, never a traceback."""
    _bookkeeping.clear()
    code = None
    try:
        code = main(argv) or 0
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, as command-line tools do, and point stdout
        # at nothing so Python's flush at exit has nowhere to fail. A finished run keeps its exit code; one
        # cut short exits as a process killed by the closed pipe would (128 + SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141 if code is None else code
    except InputError as err:
        _undo_bookkeeping()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception:
        _undo_bookkeeping()
        raise
    except KeyboardInterrupt:
        print("interrupted; finished outputs were kept, run the same command again to resume",
              file=sys.stderr)
        return 130


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but a usage error (missing or bad argument, in the parser or any
    subcommand) raises an InputError, so :func:`run` reports it in one line with exit code 2."""
    for each in _with_subparsers(parser):
        each.error = partial(_usage_error, each)
    return parser.parse_args(argv)


def _with_subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:  # argparse offers no public way to reach subcommand parsers
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                yield from _with_subparsers(subparser)


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    raise InputError(f"{parser.prog}: {message} (--help lists the arguments)")


def bookkeeping_path(path: str | Path) -> Path:
    """Note that ``path`` is about to be written as run bookkeeping (a log, a config): when the run then
    fails before writing anything else beside it, :func:`run` restores what was there before."""
    path = Path(path)
    if path.is_file():
        before = frozenset(os.listdir(path.parent))
        _bookkeeping.append(_Bookkeeping(path, before, path.read_bytes()))
        return path
    missing = [path] + [p for p in path.parents if not p.exists()]
    for each in reversed(missing):
        before = frozenset(os.listdir(each.parent)) if each.parent.is_dir() else frozenset()
        _bookkeeping.append(_Bookkeeping(each, before))
    return path


def _undo_bookkeeping() -> None:
    """Undo :func:`bookkeeping_path` entries, newest first, where nothing else was written beside them."""
    noted = {entry.path.absolute() for entry in _bookkeeping}
    root = logging.getLogger()
    for handler in list(root.handlers):   # close our run.log handlers so the files can go
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) in noted:
            root.removeHandler(handler)
            handler.close()
    for entry in reversed(_bookkeeping):
        path = entry.path
        if not path.exists():
            continue
        beside = {name for name in set(os.listdir(path.parent)) - entry.folder_before
                  if (path.parent / name).absolute() not in noted}
        if beside:
            continue   # the run produced other outputs here: keep its log and config with them
        if entry.previous is not None:
            atomic_write_bytes(path, entry.previous)
        elif path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink()
    _bookkeeping.clear()


def setup_logging(output_dir: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to <output_dir>/run.log."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if output_dir is not None:
        log_file = bookkeeping_path(Path(output_dir) / "run.log")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("torch", "transformers", "peft", "trl", "sentence-transformers", "rouge-score", "nltk"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def config_dict(args: argparse.Namespace | dict) -> dict:
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def write_config(output_dir: str | Path, args: argparse.Namespace | dict, **extra) -> Path:
    """Write <output_dir>/config.json: the arguments, git commit, time and library versions."""
    payload = {
        "args": config_dict(args),
        "git_commit": git_commit(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": _package_versions(),
        **extra,
    }
    return atomic_write_json(bookkeeping_path(Path(output_dir) / "config.json"), payload)


def writable_file(value: str) -> Path:
    """argparse type of an output file path: fails at parse time when it cannot be written."""
    return _checked_output(value, "file")


def writable_dir(value: str) -> Path:
    """argparse type of an output folder: fails at parse time when it cannot be created or written."""
    return _checked_output(value, "folder")


def _checked_output(value: str, kind: str) -> Path:
    try:
        return check_writable(Path(value), kind)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ----------------------------------------------------------------------------- shared flags

def task_name(value: str) -> str:
    """argparse type: resolve any alias to the canonical task name (unknown -> 'did you mean')."""
    from data.tasks import get_task

    try:
        return get_task(value).name
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_task_argument(parser: argparse.ArgumentParser, *flags: str, required: bool = True) -> None:
    flags = flags or ("--task",)
    parser.add_argument(*flags, dest="task", type=task_name, required=required,
                        help="task name or alias, e.g. LaMP_4, LaMP-4, news_headline, LongLaMP_2 "
                             "(`python -m data.tasks ls` lists them)")


def add_workers_argument(parser: argparse.ArgumentParser, work: str) -> None:
    def positive(value: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
        return int(value)

    parser.add_argument("--workers", type=positive, default=None,
                        help=f"processes for {work} (default: all CPU cores; results do not depend on it)")


def add_model_arguments(parser: argparse.ArgumentParser, *flags: str, default: str | None = "default") -> None:
    group = parser.add_argument_group("model")
    group.add_argument(*(flags or ("--model_name",)), dest="model_name", default=default,
                       help="'default' (packaged SmolLM2-135M-Instruct), a local HF folder, a .gguf file "
                            "or a hub id already in the local cache (default: %(default)s)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    group.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="default: bfloat16 on CUDA, float32 on CPU")
    group.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"],
                       help="generation backend; auto uses vLLM when installed with a GPU")


def add_generation_arguments(parser: argparse.ArgumentParser, max_new_tokens: int | None = None) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--max_new_tokens", type=int, default=max_new_tokens,
                       help="default: the task's length from the registry")
    group.add_argument("--num_beams", type=int, default=1, help="beam width (1 = greedy)")
    group.add_argument("--do_sample", action="store_true", help="sample instead of greedy/beam search")
    group.add_argument("--temperature", type=float, default=1.0)
    group.add_argument("--top_p", type=float, default=1.0)
    group.add_argument("--top_k", type=int, default=0, help="0 = no top-k filtering")
    group.add_argument("--repetition_penalty", type=float, default=1.0)
    group.add_argument("--batch_size", type=int, default=16, help="prompts per generation batch")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--chat", default="auto", choices=["auto", "on", "off"],
                       help="apply the model's chat template (auto: when the model has one)")


def generation_options(args: argparse.Namespace, max_new_tokens: int) -> dict:
    """The keyword arguments of lm handle.generate() from the shared generation flags."""
    return {
        "max_new_tokens": args.max_new_tokens or max_new_tokens,
        "num_beams": args.num_beams,
        "do_sample": args.do_sample,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "chat": {"auto": None, "on": True, "off": False}[args.chat],
    }


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("retrieval")
    group.add_argument("--use_profile", action="store_true", help="put retrieved profile items in the prompt")
    group.add_argument("--retriever", default="bm25", choices=["bm25", "contriever", "recency", "random"],
                       help="how profile items are chosen when not --is_ranked (default: %(default)s)")
    group.add_argument("--is_ranked", action="store_true",
                       help="profiles are already ordered (merge_with_rank output): take the first K")
    group.add_argument("--num_retrieved", type=int, default=1, help="K, profile items in the prompt")
    group.add_argument("--retriever_model", default="default",
                       help="dense encoder for --retriever contriever: 'default' (packaged "
                            "all-MiniLM-L6-v2) or an HF encoder folder such as facebook/contriever")
    group.add_argument("--use_date", action="store_true", help="append ' date: <date>' to retrieval documents")
