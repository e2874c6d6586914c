"""data.cli: usage errors of every entry script are one line on stderr with exit code 2; dataclass options."""
import argparse
from dataclasses import dataclass

import pytest

from data.cli import add_dataclass_arguments, add_workers_argument, from_args, option, parse_args, run


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build")
    build.add_argument("--out", required=True)
    add_workers_argument(build, "building")
    return parser


@pytest.mark.parametrize("argv, message", [
    ([], "tool: the following arguments are required: command"),
    (["build"], "tool build: the following arguments are required: --out"),
    (["build", "--out", "x", "--workers", "0"], "tool build: argument --workers: must be a whole number >= 1"),
    (["build", "--out", "x", "--nope"], "tool: unrecognized arguments: --nope"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert run(lambda args: parse_args(make_parser(), args), argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_good_arguments_parse():
    args = parse_args(make_parser(), ["build", "--out", "x", "--workers", "3"])
    assert (args.command, args.out, args.workers) == ("build", "x", 3)


# ----------------------------------------------------------------------------- dataclass options

@dataclass
class Toy:
    count: int = option(3, "how many", aliases=["--reference_count"], minimum=1)
    ratio: float | None = option(None, "a share")
    names: list[str] | None = option(None, "one or more names")
    mode: str = option("a", "which mode", choices=["a", "b"])
    verbose: bool = option(False, "talk more")
    enabled: bool = option(True, "do it")


def toy_parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_dataclass_arguments(parser, Toy, "toy", **kwargs)
    return parser


def test_dataclass_fields_become_typed_flags():
    assert from_args(Toy, parse_args(toy_parser(), [])) == Toy()
    args = parse_args(toy_parser(), ["--reference_count", "5", "--ratio", "0.5", "--names", "x", "y", "--mode", "b",
                                     "--verbose", "--no_enabled"])
    assert from_args(Toy, args) == Toy(count=5, ratio=0.5, names=["x", "y"], mode="b", verbose=True, enabled=False)
    assert from_args(Toy, parse_args(toy_parser(), ["--verbose", "false", "--enabled", "true"])) == Toy()
    # A script's own defaults and spellings; excluded fields keep the dataclass default (or an override).
    parser = toy_parser(defaults={"count": 7}, flags={"ratio": ("--share",)}, exclude=("mode",))
    args = parse_args(parser, ["--share", "0.25"])
    assert from_args(Toy, args, mode="b") == Toy(count=7, ratio=0.25, mode="b")
    assert "--mode" not in parser.format_help() and "--ratio" not in parser.format_help()


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "argument --count/--reference_count: must be at least 1, got 0"),
    (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
    (["--verbose", "maybe"], "expected true or false, got 'maybe'"),
])
def test_dataclass_flags_reject_bad_values_in_one_line(argv, message, capsys):
    assert run(lambda args: parse_args(toy_parser(), args), argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_two_groups_writing_one_attribute_are_refused():
    parser = toy_parser()
    with pytest.raises(ValueError, match="already has"):
        add_dataclass_arguments(parser, Toy, "again")


# ----------------------------------------------------------------------------- output paths checked early

def test_writable_types_refuse_unwritable_paths_at_parse_time(tmp_path, capsys):
    from data.cli import writable_dir, writable_file

    regular = tmp_path / "a_file"
    regular.write_text("x")
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--output_dir", type=writable_dir)
    parser.add_argument("--output_file", type=writable_file)
    cases = [
        (["--output_dir", str(regular)], "exists and is not a folder"),
        (["--output_dir", str(regular / "sub")], "is a file, not a folder"),
        (["--output_file", str(tmp_path)], "is a folder; expected a file path"),
        (["--output_file", str(regular / "x.json")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        assert run(lambda args: parse_args(parser, args), argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    args = parse_args(parser, ["--output_dir", str(tmp_path / "new" / "deep"), "--output_file", str(tmp_path / "r.json")])
    assert args.output_dir == tmp_path / "new" / "deep" and not args.output_dir.exists()  # checked, not created


def test_check_writable_reports_a_folder_it_cannot_write_in(tmp_path, monkeypatch):
    import tempfile

    from data.errors import InputError
    from data.io import check_writable

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(InputError, match="cannot write in .*Permission denied"):
        check_writable(tmp_path / "out", "folder")


# ----------------------------------------------------------------------------- failed runs leave nothing

def _failing_main(output_dir, write_other_output=False):
    from data.cli import setup_logging, write_config
    from data.errors import InputError

    def main(argv):
        setup_logging(output_dir)
        write_config(output_dir, {"model": "broken"})
        if write_other_output:
            (output_dir / "predictions.json").write_text("{}")
        raise InputError("model.gguf: cannot load model: truncated")
    return main


def test_a_run_that_fails_before_any_output_leaves_no_log_config_or_folder(tmp_path, capsys):
    output_dir = tmp_path / "runs" / "x"
    assert run(_failing_main(output_dir)) == 2
    assert "cannot load model" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_failed_rerun_restores_the_earlier_config_and_log(tmp_path):
    output_dir = tmp_path / "x"
    output_dir.mkdir()
    (output_dir / "config.json").write_text('{"model": "good"}')
    (output_dir / "run.log").write_text("earlier run\n")
    (output_dir / "predictions.json").write_text('{"task": "LaMP_4", "golds": []}')
    assert run(_failing_main(output_dir)) == 2
    assert (output_dir / "config.json").read_text() == '{"model": "good"}'
    assert (output_dir / "run.log").read_text() == "earlier run\n"
    assert sorted(p.name for p in output_dir.iterdir()) == ["config.json", "predictions.json", "run.log"]


def test_a_run_that_wrote_outputs_keeps_its_log_and_config(tmp_path):
    output_dir = tmp_path / "x"
    assert run(_failing_main(output_dir, write_other_output=True)) == 2
    assert sorted(p.name for p in output_dir.iterdir()) == ["config.json", "predictions.json", "run.log"]
    assert "broken" in (output_dir / "config.json").read_text()
