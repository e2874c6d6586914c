"""Merge LaMP questions, their gold outputs and a profile ranking into one "sorted" questions file.

    python -m lamp_rag.merge_with_rank --lamp_questions_addr data/sample/LaMP_4/dev_questions.json \\
        --lamp_output_addr data/sample/LaMP_4/dev_outputs.json \\
        --profile_ranking_addr runs/rank/LaMP_4_dev_bm25.json --merged_output_addr runs/rank/LaMP_4_dev_sorted.json

Every question gets its gold as "output" and its profile reordered by the ranking
(``{question_id: [item ids, best first]}`` from ``python -m lamp_rag.rank_profiles``). Profile items the
ranking does not name are APPENDED after the ranked ones in their original order (the reference dropped
them). Without --profile_ranking_addr the original order is kept. The outputs file is the official
``{"task", "golds"}`` one; a question without a gold is an error unless --allow_missing_outputs (then it
gets no "output" field; an earlier question's gold is never reused). A ranking that names an item or a
question the questions file does not have is an error. The result, a JSON list read by evaluate_llm /
train_llm with --is_ranked, is written atomically with its provenance in <output>.config.json beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

from data.cli import add_task_argument, config_path, parse_args, run, writable_file, write_config
from data.errors import input_error


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.merge_with_rank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamp_questions_addr", required=True, type=Path, help="LaMP questions file")
    parser.add_argument("--lamp_output_addr", type=Path, default=None,
                        help="gold outputs {\"task\", \"golds\": [{\"id\", \"output\"}]} (omit only with "
                             "--allow_missing_outputs, e.g. for a test split)")
    parser.add_argument("--profile_ranking_addr", type=Path, default=None,
                        help="ranking {question_id: [item ids, best first]}; items it does not name are "
                             "appended in their original order (default: keep the original order)")
    parser.add_argument("--merged_output_addr", required=True, type=writable_file, help="JSON list to write")
    add_task_argument(parser, required=False)
    parser.add_argument("--allow_missing_outputs", action="store_true",
                        help="keep questions that have no gold (written without 'output') instead of failing")
    return parser


def reorder_profile(profile: Sequence[Mapping], ranked_ids: Sequence, question_id: str,
                    ranking_path: Path) -> list[Mapping]:
    """The items named by ``ranked_ids`` in that order, then the unnamed ones in their original order."""
    by_id = {}
    for item in profile:
        if str(item["id"]) in by_id:
            raise input_error(ranking_path, "duplicate profile item id: cannot reorder by id",
                              record=question_id, field=str(item["id"]))
        by_id[str(item["id"])] = item
    ranked, seen = [], set()
    for item_id in map(str, ranked_ids):
        if item_id not in by_id:
            raise input_error(ranking_path, f"ranks item {item_id!r}, which is not in the question's profile",
                              record=question_id)
        if item_id in seen:
            raise input_error(ranking_path, f"ranks item {item_id!r} twice", record=question_id)
        seen.add(item_id)
        ranked.append(by_id[item_id])
    return ranked + [item for item in profile if str(item["id"]) not in seen]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.io import atomic_write_json, read_json
    from data.loaders import lamp_question, load_examples, read_golds

    golds, task = {}, args.task
    if args.lamp_output_addr is not None:
        task, golds = read_golds(args.lamp_output_addr, args.task)
    examples = load_examples(args.lamp_questions_addr, task=task)
    rankings = {}
    if args.profile_ranking_addr is not None:
        rankings = read_json(args.profile_ranking_addr)
        if not isinstance(rankings, dict) or not all(isinstance(r, list) for r in rankings.values()):
            raise input_error(args.profile_ranking_addr, "expected an object {question_id: [item ids]}")
        unknown = rankings.keys() - {example.id for example in examples}
        if unknown:
            raise input_error(args.profile_ranking_addr, f"{len(unknown)} question id(s) not in "
                                                         f"{args.lamp_questions_addr.name}, e.g. {min(unknown)!r}")

    merged, missing = [], []
    for example in examples:
        record = lamp_question(example)
        if args.profile_ranking_addr is not None:
            if example.id not in rankings:
                raise input_error(args.profile_ranking_addr, "no ranking for this question", record=example.id)
            record["profile"] = reorder_profile(example.profile, rankings[example.id], example.id,
                                                args.profile_ranking_addr)
        gold = golds.get(example.id, example.target)
        if gold is None:
            missing.append(example.id)
        else:
            record["output"] = gold
        merged.append(record)
    if missing and not args.allow_missing_outputs:
        source = args.lamp_output_addr or "no --lamp_output_addr"
        raise input_error(args.lamp_questions_addr, f"{len(missing)} question(s) have no gold output in "
                                                    f"{source} (e.g. {missing[0]!r}); pass --allow_missing_outputs "
                                                    f"to keep them")
    extra_golds = golds.keys() - {example.id for example in examples}
    if extra_golds:
        raise input_error(args.lamp_output_addr, f"{len(extra_golds)} gold id(s) have no question in "
                                                 f"{args.lamp_questions_addr.name}, e.g. {min(extra_golds)!r}")
    atomic_write_json(args.merged_output_addr, merged)
    config = config_path(args.merged_output_addr)
    write_config(config.parent, args, filename=config.name, output=str(args.merged_output_addr))
    print(f"merged {len(merged)} questions ({len(missing)} without gold): {args.merged_output_addr} "
          f"(config: {config})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
