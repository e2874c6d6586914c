"""data.cli: usage errors of every entry script are one line on stderr with exit code 2."""
import argparse

import pytest

from data.cli import add_workers_argument, parse_args, run


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
