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
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NoReturn, Sequence, TypeVar

from data.errors import InputError
from data.io import atomic_write_bytes, atomic_write_json, check_writable

REPO_ROOT = Path(__file__).resolve().parent.parent
# --length_from_golds: answers are cut at this quantile of the train golds' lengths (best mean ROUGE-1 of
# no-profile and BM25 top-3 on gitlamp TRAIN among 0.5/0.75/0.9/0.95/1, lamp_rag/README.md).
DEFAULT_LENGTH_QUANTILE = 0.95
log = logging.getLogger("lampkit")
T = TypeVar("T")


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
    set_process_defaults()
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


def set_process_defaults() -> None:
    """Environment defaults of every entry script (a variable already set wins).

    Offline by default: a hub id resolves only from the local cache unless the user sets HF_HUB_OFFLINE=0.
    Sleeping, not spinning, OpenMP workers: on a small shared CPU box, spinning threads of two torch
    processes starve each other (batch-1 decoding measured 8x slower); torch reads it when first imported,
    which entry scripts do inside main().
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


def config_path(output_file: str | Path) -> Path:
    """Where the provenance of a single output file goes: ``<output>.config.json`` beside it, so several
    outputs in one folder (the train and dev rankings) each keep their own."""
    output_file = Path(output_file)
    return output_file.with_name(output_file.name + ".config.json")


def config_dict(args: argparse.Namespace | dict) -> dict:
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def write_config(output_dir: str | Path, args: argparse.Namespace | dict, *, filename: str = "config.json",
                 **extra) -> Path:
    """Write <output_dir>/config.json (or ``filename``): the arguments, git commit, time and library versions."""
    payload = {
        "args": config_dict(args),
        "git_commit": git_commit(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": _package_versions(),
        **extra,
    }
    return atomic_write_json(bookkeeping_path(Path(output_dir) / filename), payload)


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


# ----------------------------------------------------------------------------- typed options

def option(default=MISSING, help: str = "", *, flags: Sequence[str] = (), aliases: Sequence[str] = (),
           choices: Sequence | None = None, minimum: float | None = None, type: Callable | None = None):
    """A dataclass field that :func:`add_dataclass_arguments` turns into a flag.

    ``flags`` replace the default ``--<field name>``; ``aliases`` are accepted besides it (e.g. the
    reference's spelling); ``minimum`` rejects smaller values at parse time; ``type`` overrides the
    annotation's (e.g. a converter that resolves task aliases).
    """
    metadata = {"help": help, "flags": tuple(flags), "aliases": tuple(aliases), "choices": choices,
                "minimum": minimum, "type": type}
    return field(default=default, metadata=metadata)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str,
                            defaults: Mapping[str, Any] | None = None,
                            flags: Mapping[str, Sequence[str]] | None = None,
                            exclude: Sequence[str] = ()) -> argparse._ArgumentGroup:
    """One argparse group with a flag per field of the dataclass ``cls`` (the one place flags are built).

    A field ``name: T = default`` becomes ``--name`` (plus its ``aliases``) with ``dest=name``, the type from
    the annotation (``X | None`` parses X, ``list[X]`` takes one or more values, ``bool`` is a switch that
    also takes true/false, with ``--no_<name>`` when it is on by default), the field's help and default.
    ``defaults`` override a field's default for this script (the profile study's own defaults), ``flags``
    replace a field's flag names (a script's own spelling), ``exclude`` leaves fields out (:func:`from_args`
    then uses their dataclass default or an override).
    """
    defaults, flags = dict(defaults or {}), dict(flags or {})
    unknown = (defaults.keys() | flags.keys() | set(exclude)) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    taken = {action.dest for action in parser._actions} & ({f.name for f in fields(cls)} - set(exclude))
    if taken:   # two options would write the same attribute and from_args could not tell them apart
        raise ValueError(f"{cls.__name__}: the parser already has {sorted(taken)}")
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for each in fields(cls):
        if each.name in exclude:
            continue
        meta = each.metadata
        names = flags.get(each.name) or [*(meta.get("flags") or (f"--{each.name}",)), *meta.get("aliases", ())]
        default = defaults.get(each.name, _field_default(each))
        value_type, is_list = _value_type(hints[each.name])
        help_text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": each.name}
        if default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default is not None and value_type is not bool:
                help_text += " (default: %(default)s)"
        if value_type is bool:
            # As Hugging Face's HfArgumentParser: "--x", "--x false" and, for a switch that is on, "--no_x".
            kwargs.update(nargs="?", const=True, type=_boolean, metavar="BOOL")
            if default is True:
                group.add_argument(f"--no_{each.name}", dest=each.name, action="store_false",
                                   help=f"turn --{each.name} off")
        else:
            kwargs["type"] = _checked(meta.get("type") or value_type, meta.get("minimum"))
            if is_list:
                kwargs["nargs"] = "+"
            if meta.get("choices") is not None:
                kwargs["choices"] = meta["choices"]
        group.add_argument(*dict.fromkeys(names), help=help_text, **kwargs)
    return group


def from_args(cls: type[T], args: argparse.Namespace | Mapping[str, Any], **overrides) -> T:
    """The dataclass ``cls`` from parsed arguments: every field the parser defined, then ``overrides``."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    chosen = {each.name: values[each.name] for each in fields(cls) if each.name in values}
    return cls(**{**chosen, **overrides})


def _field_default(each) -> Any:
    if each.default is not MISSING:
        return each.default
    if each.default_factory is not MISSING:
        return each.default_factory()
    return MISSING


def _value_type(annotation) -> tuple[Callable, bool]:
    """(type of one value, whether the flag takes a list) of an annotation such as ``list[str] | None``."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _value_type(args[0])
    if typing.get_origin(annotation) is list:
        return args[0], True
    return annotation, False


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _checked(convert: Callable, minimum: float | None) -> Callable:
    if minimum is None:
        return convert

    def parse(text: str):
        value = convert(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    parse.__name__ = getattr(convert, "__name__", "value")   # argparse names the type in its messages
    return parse


# ----------------------------------------------------------------------------- shared options

@dataclass
class ModelOptions:
    """Which model to load and how (every script that loads a model takes these flags)."""

    model_name: str = option("default", "'default' (packaged SmolLM2-135M-Instruct), a local HF folder, a .gguf "
                                        "file or a hub id already in the local HF cache")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda if present)")
    dtype: str | None = option(None, "default: bfloat16 on CUDA, float32 on CPU",
                               choices=["float32", "bfloat16", "float16"])
    backend: str = option("auto", "generation backend; auto uses vLLM when installed with a GPU",
                          choices=["auto", "hf", "vllm"])
    tensor_parallel_size: int = option(1, "devices the vLLM engine splits the model over (vLLM backend only)",
                                       minimum=1)
    allow_download: bool = option(False, "let Hugging Face download a hub id that is not in the local cache "
                                         "(off by default; also needs HF_HUB_OFFLINE=0)")
    cache_dir: str | None = option(None, "Hugging Face cache folder to find (and, with --allow_download, put) "
                                         "hub ids in (default: the HF default cache)")

    def load(self, **overrides):
        """``lm.load_model`` with these options (``overrides``: e.g. backend="hf", needs_hf=True)."""
        from lm import load_model

        if self.backend == "vllm" and overrides.get("backend") == "hf":
            log.warning("--backend vllm: this step runs on Hugging Face (it trains, scores or steers decoding, "
                        "which vLLM does not serve)")
        options = {"device": self.device, "dtype": self.dtype, "backend": self.backend,
                   "allow_download": self.allow_download, "cache_dir": self.cache_dir,
                   "tensor_parallel_size": self.tensor_parallel_size, **overrides}
        return load_model(self.model_name, **options)

    def load_encoder(self, name: str):
        """``lm.load_encoder`` of ``name`` on this device, with the same download and cache settings."""
        from lm import load_encoder

        return load_encoder(name, device=self.device, allow_download=self.allow_download, cache_dir=self.cache_dir)


@dataclass
class GenerationOptions:
    """Decoding settings (the keyword arguments of ``lm`` handle.generate)."""

    max_new_tokens: int | None = option(None, "new tokens per output (default: the task's length from the "
                                              "registry)", aliases=["--generation_max_length"], minimum=1)
    num_beams: int | None = option(None, "beam width (default: 1, greedy)", aliases=["--generation_num_beams"],
                                   minimum=1)
    do_sample: bool = option(False, "sample instead of greedy/beam search")
    temperature: float = option(1.0, "sampling temperature")
    top_p: float = option(1.0, "nucleus sampling mass")
    top_k: int = option(0, "0 = no top-k filtering", minimum=0)
    repetition_penalty: float = option(1.0, "1 = none")
    batch_size: int = option(16, "prompts per generation batch", aliases=["--per_device_batch_size"], minimum=1)
    seed: int = option(0, "random seed (sampling, random retrieval)")
    chat: str = option("auto", "apply the model's chat template (auto: when the model has one)",
                       choices=["auto", "on", "off"])
    stop_at_newline: str = option("auto", "end an answer with its first non-blank line (auto: for tasks with "
                                          "one-line answers; they keep only that line anyway, so the text is the "
                                          "same and generation shorter)", choices=["auto", "on", "off"])
    output_repetition_penalty: float = option(1.0, "repetition penalty on the generated tokens only, not the "
                                                   "prompt's (1 = off)")
    length_from_golds: str | None = option(None, "a {task, golds} file of TRAIN golds (never the evaluated "
                                                 "split): max_new_tokens becomes the --length_quantile of their "
                                                 "lengths in the model's tokens")
    length_quantile: float | None = option(None, f"with --length_from_golds (default: {DEFAULT_LENGTH_QUANTILE})")

    def generate_kwargs(self, max_new_tokens: int, num_beams: int = 1, *, spec=None, tokenizer=None) -> dict:
        """handle.generate() options; ``max_new_tokens`` / ``num_beams`` fill what the user left unset.

        The task ``spec`` turns the one-line stop on for single-line tasks; a length budget from
        ``--length_from_golds`` needs both the spec and the model's ``tokenizer``.
        """
        budget = self._length_budget(spec, tokenizer)
        return {
            "max_new_tokens": self.max_new_tokens or budget or max_new_tokens,
            "num_beams": self.num_beams or num_beams,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "chat": {"auto": None, "on": True, "off": False}[self.chat],
            "stop_at_newline": {"auto": bool(spec and spec.single_line), "on": True, "off": False}[
                self.stop_at_newline],
            "output_repetition_penalty": self.output_repetition_penalty,
        }

    def _length_budget(self, spec, tokenizer) -> int | None:
        """max_new_tokens from the train golds of --length_from_golds; None without it."""
        if self.length_from_golds is None:
            if self.length_quantile is not None:
                raise InputError("--length_quantile needs --length_from_golds")
            return None
        if self.max_new_tokens:
            raise InputError("give either --max_new_tokens or --length_from_golds, not both")
        if spec is None or tokenizer is None:
            raise ValueError("a length budget from golds needs the task spec and the model's tokenizer")
        from data.loaders import read_golds
        from lm.generation import length_budget

        _, golds = read_golds(self.length_from_golds, task=spec.name)
        quantile = DEFAULT_LENGTH_QUANTILE if self.length_quantile is None else self.length_quantile
        budget = length_budget(tokenizer, list(golds.values()), quantile)
        log.info("max_new_tokens %d: the %.2f quantile of %d gold lengths in %s", budget, quantile, len(golds),
                 self.length_from_golds)
        return budget


def add_model_arguments(parser: argparse.ArgumentParser, *flags: str, default: str | None = "default",
                        hf_cache_dir: bool = False) -> None:
    """The model group; ``flags`` replace ``--model_name`` (e.g. the reference's ``--model_addr``);
    ``hf_cache_dir`` adds the reference's ``--cache_dir`` (scripts where that name is free)."""
    add_dataclass_arguments(parser, ModelOptions, "model", defaults={"model_name": default},
                            flags={"model_name": flags} if flags else None,
                            exclude=() if hf_cache_dir else ("cache_dir",))


def add_generation_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    add_dataclass_arguments(parser, GenerationOptions, "generation", exclude=exclude)


def generation_options(args: argparse.Namespace, max_new_tokens: int, num_beams: int = 1, *, spec=None,
                       tokenizer=None) -> dict:
    """The keyword arguments of lm handle.generate() from the shared generation flags (see generate_kwargs)."""
    return from_args(GenerationOptions, args).generate_kwargs(max_new_tokens, num_beams, spec=spec,
                                                              tokenizer=tokenizer)
