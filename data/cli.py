"""Command-line plumbing shared by every entry script: error handling, config.json, shared flags.

Each script defines ``make_parser()`` and ``main(argv=None)`` and ends with
``if __name__ == "__main__": raise SystemExit(run(main))``.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from functools import partial
from typing import Callable, Iterator, NoReturn, Sequence

from data.errors import InputError
from data.io import atomic_write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
# --length_from_golds: answers are cut at this quantile of the train golds' lengths (best mean ROUGE-1 of
# no-profile and BM25 top-3 on gitlamp TRAIN among 0.5/0.75/0.9/0.95/1, lamp_rag/README.md).
DEFAULT_LENGTH_QUANTILE = 0.95
log = logging.getLogger("lampkit")


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a script's main; bad input becomes one line on stderr and exit code 2, never a traceback."""
    try:
        return main(argv) or 0
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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


def setup_logging(output_dir: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to <output_dir>/run.log."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "run.log", encoding="utf-8"))
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
    return atomic_write_json(Path(output_dir) / "config.json", payload)


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
    group.add_argument("--stop_at_newline", default="auto", choices=["auto", "on", "off"],
                       help="end an answer with its first non-blank line (auto: for tasks with one-line answers; "
                            "they keep only that line anyway, so the text is the same and generation shorter)")
    group.add_argument("--output_repetition_penalty", type=float, default=1.0,
                       help="repetition penalty on the generated tokens only, not the prompt's (default: 1 = off)")
    group.add_argument("--length_from_golds", type=Path, default=None,
                       help="a {task, golds} file of TRAIN golds (never the evaluated split): max_new_tokens "
                            "becomes the --length_quantile of their lengths in the model's tokens")
    group.add_argument("--length_quantile", type=float, default=None,
                       help=f"with --length_from_golds (default: {DEFAULT_LENGTH_QUANTILE})")


def generation_options(args: argparse.Namespace, spec, tokenizer=None) -> dict:
    """The keyword arguments of lm handle.generate() from the shared generation flags.

    Defaults come from the task ``spec`` (length, one-line answers); a length budget
    from ``--length_from_golds`` needs the model's ``tokenizer``.
    """
    return {
        "max_new_tokens": _max_new_tokens(args, spec, tokenizer),
        "num_beams": args.num_beams,
        "do_sample": args.do_sample,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "chat": {"auto": None, "on": True, "off": False}[args.chat],
        "stop_at_newline": {"auto": spec.single_line, "on": True, "off": False}[args.stop_at_newline],
        "output_repetition_penalty": args.output_repetition_penalty,
    }


def _max_new_tokens(args: argparse.Namespace, spec, tokenizer) -> int:
    """--max_new_tokens, else the length budget of --length_from_golds, else the task's registry length."""
    if args.length_from_golds is None:
        if args.length_quantile is not None:
            raise InputError("--length_quantile needs --length_from_golds")
        return args.max_new_tokens or spec.max_new_tokens
    if args.max_new_tokens:
        raise InputError("give either --max_new_tokens or --length_from_golds, not both")
    from data.loaders import read_golds
    from lm.generation import length_budget

    _, golds = read_golds(args.length_from_golds, task=spec.name)
    quantile = DEFAULT_LENGTH_QUANTILE if args.length_quantile is None else args.length_quantile
    budget = length_budget(tokenizer, list(golds.values()), quantile)
    log.info("max_new_tokens %d: the %.2f quantile of %d gold lengths in %s", budget, quantile, len(golds),
             args.length_from_golds)
    return budget


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
