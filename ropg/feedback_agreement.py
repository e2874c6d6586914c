"""How well rankers agree with the LLM's feedback: the mean feedback metric of each ranker's top-1 item
among a question's scored candidates (e.g. dev questions scored by ropg.profile_item_utilization_scorer).

    python -m ropg.feedback_agreement --task LaMP_4 --data dev_questions.json --outputs dev_outputs.json \\
        --scores_path runs/ropg/feedback/dev.json --use_date \\
        --encoder untrained=default --encoder kd=runs/ropg/checkpoints/kd/checkpoint/latest \\
        --output runs/ropg/agreement.json

Rows: bm25 and recency (lamp_rag's rankers), one per ``--encoder NAME=PATH`` (mean-pooled dot product), and
two references: "oracle" (the best candidate) and "candidates mean" (a uniformly random pick). A ranker's
top-1 is the candidate it ranks highest; higher is better (MAE-type metrics as the training's (w - error) / w).
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


def scored_candidates(examples, scores, scores_path) -> list[tuple]:
    """(question, its scored candidates in candidate-rank order) for each question that has feedback."""
    from ropg.feedback import pair_key

    found = []
    for example in examples:
        items = [item for item in example.profile if pair_key(example.id, item["id"]) in scores]
        if items:
            items.sort(key=lambda item: scores[pair_key(example.id, item["id"])].get("rank", 0))
            found.append((example, items))
    if not found:
        raise input_error(scores_path, "no question of the data file has a scored item")
    return found


def agreement_table(spec, questions, scores, rankers: dict, use_date: bool, scores_path=None) -> dict[str, float]:
    """{ranker name: mean feedback of its best-ranked candidate}, plus the oracle and a random pick.

    BM25 and recency rank the whole profile (BM25's idf depends on every document, so ranking only the
    candidates would change it); a dense ranker scores each document alone, so it ranks the candidates only,
    which gives the same choice for far fewer encodings.
    """
    from lamp_rag.retrieval import rank_indices
    from ropg.feedback import pair_key
    from ropg.losses import feedback_values

    examples = [example for example, _ in questions]
    only_candidates = [dataclasses.replace(example, profile=items) for example, items in questions]
    values = [dict(zip((str(item["id"]) for item in items),
                       feedback_values(spec, [scores[pair_key(example.id, item["id"])] for item in items],
                                       example.target, scores_path, example.id)))
              for example, items in questions]
    table = {}
    for name, (ranker, encoder) in rankers.items():
        ranked = only_candidates if encoder is not None else examples
        orders = rank_indices(spec, ranked, ranker, use_date=use_date, encoder=encoder, progress=False)
        top1 = [next(value[str(example.profile[i]["id"])] for i in order if str(example.profile[i]["id"]) in value)
                for example, order, value in zip(ranked, orders, values)]
        table[name] = sum(top1) / len(top1)
    table["oracle"] = sum(max(value.values()) for value in values) / len(values)
    table["candidates mean"] = sum(sum(value.values()) / len(value) for value in values) / len(values)
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
    questions = scored_candidates(load_examples(args.data, args.outputs, task=spec.name), scores, args.scores_path)
    rankers = {"bm25": ("bm25", None), "recency": ("recency", None),
               **{name: ("contriever", load_encoder(path)) for name, path in encoders.items()}}
    table = agreement_table(spec, questions, scores, rankers, args.use_date, args.scores_path)
    metric = feedback_metric(spec)
    candidates = sum(len(items) for _, items in questions) / len(questions)
    atomic_write_json(args.output, {"task": spec.name, "metric": metric, "num_questions": len(questions),
                                    "mean_candidates": candidates, "top1_feedback": table, "encoders": encoders})
    write_config(args.output.parent, args, output=str(args.output))
    print(f"| ranker | mean {metric} of its top-1 ({len(questions)} questions, {candidates:.1f} candidates) |")
    print("|---|---|")
    for name, value in table.items():
        print(f"| {name} | {value:.4f} |")
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
