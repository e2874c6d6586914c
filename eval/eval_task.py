"""Score one prediction file against its gold file (official LaMP ``eval_task.py`` interface).

    python -m eval.eval_task --golds_json dev_outputs.json --preds_json preds.json \\
        --task_name LaMP_4 --output_file metrics.json
    python eval/eval_task.py --task news_headline --golds_json G --preds_json P \\
        --task_name LaMP_4 --output_file P                 # CoPe's command: the report goes into P
    python -m eval.eval_task --golds_json G --preds_json A.json --compare B.json  # paired bootstrap B - A
    python -m eval.eval_task --golds_json G --preds_json P --metrics rouge-1 rouge-L meteor bleu \\
        --per_example per_example.json

Files: {"task": "LaMP_4", "golds": [{"id": ..., "output": ...}]}, predictions in the same format, matched
by id. An empty prediction is scored as the official scorer scores it (ROUGE 0, a wrong label, the worst
rating) and counted. The output JSON has the official shape, the metrics at the top level, with lampkit's
counts beside them: {"rouge-1": ..., "rouge-L": ..., "task", "num_examples", "missing_predictions",
"empty_predictions", "golds_file", "predictions_file"[, "comparison"]}; metric names are the official ones
(accuracy/f1, MAE/RMSE, rouge-1/rouge-L; LongLaMP adds meteor). An --output_file that is the predictions
file (as CoPe runs it) keeps the predictions and gets the report added beside them; a rerun replaces the
earlier report. Output paths are checked before scoring. Bad input: one line on stderr, exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable instead of eval/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
from typing import Sequence

from data.cli import add_task_argument, add_workers_argument, parse_args, run, writable_file
from data.errors import InputError
from data.io import atomic_write_json, read_json
from data.tasks import get_task


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.eval_task", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golds_json", type=Path, required=True, help="gold outputs file")
    parser.add_argument("--preds_json", type=Path, required=True, help="predictions file")
    add_task_argument(parser, "--task_name", "--task", required=False)
    parser.add_argument("--output_file", type=writable_file,
                        help="where to write the JSON report (optional); the predictions file itself keeps "
                             "its predictions and gets the report added")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metrics instead of the task's defaults, e.g. rouge-1 rouge-L meteor bleu")
    parser.add_argument("--per_example", type=writable_file, metavar="FILE",
                        help="also write each example's scores by id (per-example metrics only)")
    parser.add_argument("--allow_missing", action="store_true",
                        help="score gold ids that have no prediction as empty outputs")
    add_workers_argument(parser, "ROUGE/METEOR/BLEU on large files")
    group = parser.add_argument_group("comparison (paired bootstrap)")
    group.add_argument("--compare", type=Path, metavar="PREDS2",
                       help="second predictions file: confidence interval of PREDS2 - PREDS per metric")
    group.add_argument("--bootstrap_samples", type=int, default=1000, help="resamples (default: %(default)s)")
    group.add_argument("--confidence", type=float, default=0.95, help="interval level (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def format_value(value: float) -> str:
    return f"{value:.4f}"


def format_report(report: dict) -> str:
    """A plain-text table of one task's report (with the comparison, when present)."""
    from eval.scoring import metric_values

    lines = [f"{report['task']}: {report['num_examples']} examples"]
    if report["missing_predictions"] or report["empty_predictions"]:
        lines[0] += (f" ({report['missing_predictions']} without a prediction, "
                     f"{report['empty_predictions']} empty; both scored as empty outputs)")
    comparison = report.get("comparison")
    if comparison is None:
        lines.append(f"  {'metric':<11} {'value':>8}")
        lines += [f"  {name:<11} {format_value(value):>8}" for name, value in metric_values(report).items()]
        return "\n".join(lines)
    level = f"{comparison['confidence']:.0%} CI"
    lines.append(f"  {'metric':<11} {'preds':>8} {'compare':>8} {'diff':>8}  {level:<21} p_not_better")
    for name, result in comparison["metrics"].items():
        interval = f"[{result['low']:+.4f}, {result['high']:+.4f}]"
        marker = "  excludes 0" if result["excludes_zero"] else ""
        lines.append(f"  {name:<11} {format_value(result['baseline']):>8} {format_value(result['candidate']):>8} "
                     f"{result['difference']:>+8.4f}  {interval:<21} {result['p_not_better']:.3f}{marker}")
    lines.append(f"  diff = compare - preds ({comparison['candidate']} - {report['predictions_file']}); "
                 f"{comparison['samples']} paired bootstrap resamples")
    return "\n".join(lines)


def add_to_predictions(predictions: dict, report: dict) -> dict:
    """The predictions file's content with the report beside its own keys (its task name kept); the fields
    of an earlier report in it are replaced, so running the same command again gives the same file."""
    from eval.metrics import METRICS
    from eval.scoring import REPORT_FIELDS

    earlier = set(METRICS) | set(REPORT_FIELDS) | {"comparison"}
    kept = {key: value for key, value in predictions.items() if key in ("task", "golds") or key not in earlier}
    return {**kept, **{key: value for key, value in report.items() if key != "task"}}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from eval.bootstrap import paired_bootstrap
    from eval.metrics import METRICS, resolve_metrics
    from eval.scoring import match_files, outputs_from_json, read_outputs, score_matched

    golds = read_outputs(args.golds_json)
    metrics = resolve_metrics(get_task(golds.task), args.metrics)
    per_example_metrics = [name for name in metrics if METRICS[name].per_example]
    if args.per_example and not per_example_metrics:
        raise InputError(f"--per_example: {', '.join(metrics)} are corpus-level metrics without per-example "
                         f"scores (e.g. add --metrics accuracy or MAE)")
    predictions_content = read_json(args.preds_json)
    matched = match_files(golds, outputs_from_json(predictions_content, str(args.preds_json)), args.task,
                          args.allow_missing)
    report, stats = score_matched(matched, metrics, args.workers)
    report.update(golds_file=str(args.golds_json), predictions_file=str(args.preds_json))

    if args.compare:
        other = match_files(golds, read_outputs(args.compare), args.task, args.allow_missing)
        _, other_stats = score_matched(other, metrics, args.workers)
        results = {name: paired_bootstrap(matched.task, name, stats[name], other_stats[name],
                                          args.bootstrap_samples, args.confidence, args.seed).to_dict()
                   for name in metrics}
        report["comparison"] = {"candidate": str(args.compare), "samples": args.bootstrap_samples,
                                "confidence": args.confidence, "seed": args.seed, "metrics": results,
                                "candidate_missing_predictions": len(other.missing),
                                "candidate_empty_predictions": len(other.empty)}

    # Files first, then the console: a closed pipe (`| head`) cannot cost the outputs.
    written = []
    if args.per_example:
        scores = {record_id: {name: float(stats[name][row]) for name in per_example_metrics}
                  for row, record_id in enumerate(matched.ids)}
        atomic_write_json(args.per_example, {"task": matched.task, "metrics": per_example_metrics,
                                             "scores": scores})
        written.append(f"per-example scores: {args.per_example}")
    if args.output_file:
        into_predictions = args.output_file.resolve() == args.preds_json.resolve()
        atomic_write_json(args.output_file,
                          add_to_predictions(predictions_content, report) if into_predictions else report)
        written.append(f"report: {args.output_file}" + (" (added to the predictions)" if into_predictions else ""))
    print("\n".join([format_report(report), *written]))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
