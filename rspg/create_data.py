"""Join retrievers' feedback into the selector's data (spec lamp.md 9.2), any number of retrievers.

    python -m rspg.create_data --retrivers_data_addr runs/rspg/dev/no_profile runs/rspg/dev/bm25_4 \\
        runs/rspg/dev/recency_1 --task_inputs_addr data/sample/LaMP_4/dev_questions.json \\
        --task_outputs_addr data/sample/LaMP_4/dev_outputs.json \\
        --output_dataset_addr runs/rspg/dev.json --metric rouge-1

Each --retrivers_data_addr is a rspg.retriever_utilization_scorer run folder (its feedback.json), a
reference scorer folder (per-question scores.json) or such a file; the order given is the retrievers'
order everywhere after. The output is a JSON list (see rspg.selection_data); its provenance goes to
<output>.config.json beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import add_dataclass_arguments, from_args, parse_args, run, writable_file
from lamp_rag.options import InputOptions


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rspg.create_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrivers_data_addr", "--names-list", dest="retrivers_data_addr", nargs="+",
                        required=True, help="feedback folders or files, one per retriever")
    parser.add_argument("--task_inputs_addr", required=True, type=Path, help="questions file")
    parser.add_argument("--task_outputs_addr", required=True, type=Path, help="gold outputs {task, golds}")
    parser.add_argument("--output_dataset_addr", required=True, type=writable_file, help="output JSON list")
    parser.add_argument("--metric", required=True,
                        help="the label metric, as named in the feedback: accuracy, mae, rouge-1, rouge-L "
                             "(case-insensitive: rouge-l works)")
    add_dataclass_arguments(parser, InputOptions, "data")    # --limit, as the scorer's
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.cli import config_path, write_config
    from data.io import atomic_write_json
    from data.loaders import load_examples, read_golds
    from rspg.feedback import read_feedback
    from rspg.selection_data import build_records, resolve_metric, retriever_names

    task, _ = read_golds(args.task_outputs_addr)
    examples = load_examples(args.task_inputs_addr, args.task_outputs_addr, task=task, limit=from_args(InputOptions, args).limit)
    feedbacks = [read_feedback(location) for location in args.retrivers_data_addr]
    _, first = feedbacks[0]
    metric = resolve_metric(args.metric, list(next(iter(first.values()))["metric"]) if first else [])
    records = build_records(examples, feedbacks, retriever_names(args.retrivers_data_addr), metric)
    config = write_config(args.output_dataset_addr.parent, args, filename=config_path(args.output_dataset_addr).name,
                          method="rspg.create_data", task=task)
    # The reference writes this list with indent 4.
    path = atomic_write_json(args.output_dataset_addr, records, indent=4)
    print(f"{len(records)} questions x {len(feedbacks)} retrievers ({metric}): {path}")
    print(f"config: {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
