"""How well rankers agree with the LLM's feedback: the mean feedback metric of each ranker's top-1 item
among a question's scored candidates (e.g. dev questions scored by ropg.profile_item_utilization_scorer).

    python -m ropg.feedback_agreement --task LaMP_4 --data dev_questions.json --outputs dev_outputs.json \\
        --scores_path runs/ropg/feedback/dev.json --use_date \\
        --encoder untrained=default --encoder kd=runs/ropg/checkpoints/kd/checkpoint/latest \\
        --output runs/ropg/agreement.json

Rows: bm25 and recency (lamp_rag's rankers), one per ``--encoder NAME=PATH`` (mean-pooled dot product), and
two references: "oracle" (the best candidate) and "candidates mean" (a uniformly random pick). Every ranker
reorders the same candidates; higher is better (MAE-type metrics as the training's (w - error) / w).
Writes a JSON report and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

from data.cli import add_task_argument, parse_args, run, write_config, writable_file
from data.errors import InputError, input_error


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ropg.feedback_agreement", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="questions file")
    parser.add_argument("--outputs", type=Path, default=None, help="gold outputs when the questions file has none")
    add_task_argument(parser)
    parser.add_argument("--scores_path", required=True, type=Path, help="merged feedback scores of these questions")
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH",
                        help="a dense ranker: 'default' (packaged MiniLM) or an HF encoder folder; repeatable")
    parser.add_argument("--use_date", action="store_true",
                        help="append ' date: <date>' to documents (as train_kd/train_rl do unless --no_date)")
    parser.add_argument("--output", required=True, type=writable_file, help="JSON report to write")
    return parser


def scored_candidates(examples, scores, scores_path) -> list:
    """Each question that has feedback, its profile cut to the scored items in candidate-rank order."""
    from ropg.feedback import pair_key

    restricted = []
    for example in examples:
        items = [item for item in example.profile if pair_key(example.id, item["id"]) in scores]
        if items:
            items.sort(key=lambda item: scores[pair_key(example.id, item["id"])].get("rank", 0))
            restricted.append(dataclasses.replace(example, profile=items))
    if not restricted:
        raise input_error(scores_path, "no question of the data file has a scored item")
    return restricted


def top1_feedback(spec, examples, scores, orders, scores_path=None) -> list[float]:
    """Per question, the feedback value of the item its ranker put first."""
    from ropg.feedback import pair_key
    from ropg.losses import feedback_values

    return [feedback_values(spec, [scores[pair_key(example.id, example.profile[order[0]]["id"])]],
                            example.target, scores_path, example.id)[0]
            for example, order in zip(examples, orders)]


def agreement_table(spec, examples, scores, rankers: dict, use_date: bool, scores_path=None) -> dict[str, float]:
    """{ranker name: mean top-1 feedback}, plus the oracle and a random pick, over the same candidates."""
    from lamp_rag.retrieval import rank_indices
    from ropg.feedback import pair_key
    from ropg.losses import feedback_values

    values = [feedback_values(spec, [scores[pair_key(example.id, item["id"])] for item in example.profile],
                              example.target, scores_path, example.id) for example in examples]
    table = {}
    for name, (ranker, encoder) in rankers.items():
        orders = rank_indices(spec, examples, ranker, use_date=use_date, encoder=encoder, progress=False)
        feedback = top1_feedback(spec, examples, scores, orders, scores_path)
        table[name] = sum(feedback) / len(feedback)
    table["oracle"] = sum(max(row) for row in values) / len(values)
    table["candidates mean"] = sum(sum(row) / len(row) for row in values) / len(values)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.io import atomic_write_json, read_json
    from data.loaders import load_examples
    from data.tasks import get_task
    from lm import load_encoder
    from ropg.losses import feedback_metric

    encoders = {}
    for spec_text in args.encoder:
        name, sep, path = spec_text.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--encoder {spec_text!r}: expected NAME=PATH")
        encoders[name] = path
    spec = get_task(args.task)
    scores = read_json(args.scores_path)
    if not isinstance(scores, dict):
        raise input_error(args.scores_path, 'expected {"<question_id>-<item_id>": {<metric>: value, ...}}')
    examples = scored_candidates(load_examples(args.data, args.outputs, task=spec.name), scores, args.scores_path)
    rankers = {"bm25": ("bm25", None), "recency": ("recency", None),
               **{name: ("contriever", load_encoder(path)) for name, path in encoders.items()}}
    table = agreement_table(spec, examples, scores, rankers, args.use_date, args.scores_path)
    metric = feedback_metric(spec)
    candidates = sum(len(example.profile) for example in examples) / len(examples)
    atomic_write_json(args.output, {"task": spec.name, "metric": metric, "num_questions": len(examples),
                                    "mean_candidates": candidates, "top1_feedback": table, "encoders": encoders})
    write_config(args.output.parent, args, output=str(args.output))
    print(f"| ranker | mean {metric} of its top-1 ({len(examples)} questions, {candidates:.1f} candidates) |")
    print("|---|---|")
    for name, value in table.items():
        print(f"| {name} | {value:.4f} |")
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
