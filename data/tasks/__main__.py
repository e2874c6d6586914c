"""Inspect the task registry.

    python -m data.tasks ls          # tasks, aliases, kinds, metrics
    python -m data.tasks validate    # load every entry and render every template on a sample record
"""
from __future__ import annotations

import argparse
from typing import Sequence

from data.cli import parse_args, run
from data.errors import InputError
from data.tasks import list_tasks


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["ls", "validate"])
    return parser


def validate_task(spec) -> list[str]:
    """Render every template of one task on its sample record; return the problems found."""
    problems = []
    item = dict(spec.example_item)
    missing = [f for f in spec.item_fields if f not in item]
    if missing:
        problems.append(f"example item lacks fields {missing}")
    try:
        question = spec.input_template.format(**spec.example_input_fields)
        if not spec.query(question):
            problems.append("empty retrieval query")
        spec.document(item, use_date=True)
        spec.item_prompt(item)
        spec.item_output(item)
        for name, template in spec.templates.items():
            template.item.format(**item)
            template.need_string(item)
            template.wrap.format(profile="P", input=question)
            if template.field and template.field not in spec.item_fields:
                problems.append(f"template {name}: field {template.field!r} is not an item field")
        for name, text in spec.text_templates.items():
            text.format(**item)
    except (KeyError, IndexError, ValueError) as err:
        problems.append(f"template rendering failed: {err!r}")
    for shape in spec.item_variants:
        item = {name: "x" for name in ("id", *shape.fields)}
        if spec.item_shape(item) != shape:
            problems.append(f"{shape.source} item layout is shadowed by an earlier one")
        if not {shape.input_field, shape.output_field, *shape.document_fields} <= {None, *shape.fields}:
            problems.append(f"{shape.source} item layout uses fields it does not have")
        try:
            spec.item_prompt(item)
        except (KeyError, IndexError, ValueError) as err:
            problems.append(f"{shape.source} item prompt rendering failed: {err!r}")
    if spec.best_metric not in spec.metrics:
        problems.append(f"best metric {spec.best_metric} not among metrics")
    if spec.kind != "generation" and not spec.labels:
        problems.append("classification/regression task without labels")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    tasks = list_tasks()
    if args.command == "ls":
        print(f"{'task':<12} {'kind':<15} {'metrics':<26} aliases")
        for spec in tasks:
            print(f"{spec.name:<12} {spec.kind:<15} {','.join(spec.metrics):<26} {', '.join(spec.aliases)}")
        return 0
    failures = {spec.name: validate_task(spec) for spec in tasks}
    for name, problems in failures.items():
        print(f"{name:<12} {'ok' if not problems else 'FAIL: ' + '; '.join(problems)}")
    if any(failures.values()):
        raise InputError(f"{sum(bool(p) for p in failures.values())} task(s) failed validation")
    print(f"all {len(tasks)} tasks valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
