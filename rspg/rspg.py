"""Train and validate the retriever selector (RSPG, spec lamp.md 9.3) on rspg.create_data outputs.

    python -m rspg.rspg --do_train --train_data runs/rspg/train/selection.json \\
        --val_data runs/rspg/dev/selection.json --val_lamp_golds data/sample/LaMP_4/dev_outputs.json \\
        --task LaMP_4 --rspg_type Pre --name pre --total_steps 200
    python -m rspg.rspg --do_validation --model_path runs/rspg/pre/model --val_data ... --val_lamp_golds ... \\
        --task LaMP_4 --rspg_type Pre --name pre_validation
    torchrun --nproc_per_node 2 -m rspg.rspg ...            # the same run with DDP (gloo on CPU)

Pre scores each retriever's prompt, Post the prompt with the LLM's output. The run folder
<checkpoint_dir>/<name>/ gets config.json, run.log, train_state.pt (the resume point), model/ (encoder,
scoring head, selector.json), and from validation final_preds.json ({"task", "golds": [{"id", "output",
"index"}]}), scores.json (its eval report), results.json and table.md: the selection next to every single
retriever and the oracle. --encoder auto uses allenai/longformer-base-4096 when it is in the local HF cache,
else the packaged all-MiniLM-L6-v2.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import add_task_argument, parse_args, run, writable_dir

log = logging.getLogger("lampkit.rspg")


def make_parser() -> argparse.ArgumentParser:
    from rspg.selector import RSPG_TYPES

    parser = argparse.ArgumentParser(prog="python -m rspg.rspg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", type=Path, help="create_data output to train on (--do_train)")
    parser.add_argument("--val_data", type=Path, help="create_data output to validate on")
    parser.add_argument("--val_lamp_golds", type=Path, help="gold outputs {task, golds} of --val_data's questions")
    parser.add_argument("--rspg_type", required=True, choices=RSPG_TYPES,
                        help="Pre: score the prompts; Post: score prompt and LLM output")
    add_task_argument(parser)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--do_train", action="store_true", help="train (then validate when --val_data is given)")
    mode.add_argument("--do_validation", action="store_true", help="validate the selector in --model_path")
    parser.add_argument("--model_path", type=Path, help="a saved selector (the model/ folder of a training run)")
    parser.add_argument("--name", required=True, help="run name: the run folder is <checkpoint_dir>/<name>")
    parser.add_argument("--checkpoint_dir", type=writable_dir, default=Path("runs/rspg"),
                        help="parent of run folders (default: %(default)s)")
    parser.add_argument("--encoder", default="auto",
                        help="selector encoder: auto (Longformer if cached, else the packaged MiniLM), "
                             "'default' (packaged MiniLM), an HF folder or a cached hub id")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the scores in the loss")
    parser.add_argument("--learning_rate", "--lr", dest="learning_rate", type=float, default=1e-5)
    parser.add_argument("--total_steps", type=int, default=1000, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--per_gpu_batch_size", type=int, default=1, help="questions per step and process")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--save_freq", type=int, default=500, help="save the resume state every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_length_input", type=int, default=512,
                        help="tokens per candidate (capped at the encoder's limit)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")
    return parser


def check_arguments(args) -> None:
    from data.errors import InputError

    if args.do_train and not args.train_data:
        raise InputError("--do_train needs --train_data")
    if args.do_validation and not args.model_path:
        raise InputError("--do_validation needs --model_path")
    if (args.do_validation or args.val_data) and not (args.val_data and args.val_lamp_golds):
        raise InputError("validation needs --val_data and --val_lamp_golds")
    for flag in ("temperature", "learning_rate", "total_steps", "per_gpu_batch_size", "save_freq"):
        if getattr(args, flag) <= 0:
            raise InputError(f"--{flag} must be positive, got {getattr(args, flag)}")


def validate(selector, records, args, run_dir: Path) -> str:
    """Select on the validation records, write final_preds.json, scores.json, results.json and table.md."""
    from data.errors import input_error
    from data.io import atomic_write_json, atomic_write_text
    from data.loaders import read_golds
    from data.tasks import get_task
    from eval.report import render
    from rspg.evaluation import final_predictions, selection_rows
    from rspg.selector import best_indices, select

    spec = get_task(args.task)
    _, every_gold = read_golds(args.val_lamp_golds, spec.name)
    missing = [record["id"] for record in records if record["id"] not in every_gold]
    if missing:
        raise input_error(args.val_lamp_golds, "no gold for this question of --val_data", record=missing[0])
    # The golds of the validated questions only, so a --limit'ed selection data set scores against its part.
    golds = {record["id"]: every_gold[record["id"]] for record in records}
    chosen = select(selector, records, args.rspg_type)
    preds = final_predictions(spec.name, records, chosen)
    path = atomic_write_json(run_dir / "final_preds.json", preds)
    selected = f"RSPG-{args.rspg_type} (selected)"
    rows, reports = selection_rows(spec.name, golds, records, {selected: chosen, "oracle": best_indices(records)})
    atomic_write_json(run_dir / "scores.json", reports[selected])
    atomic_write_json(run_dir / "results.json", [{"name": row.name, "n": row.num_predictions, **row.metrics}
                                                 for row in rows])
    table = render(rows, title=f"{spec.name} RSPG-{args.rspg_type}: {len(records)} questions, "
                               f"labels {records[0]['metric']}")
    atomic_write_text(run_dir / "table.md", table)
    print(table)
    print(f"final predictions: {path}")
    print(f"table: {run_dir / 'table.md'}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    check_arguments(args)
    from data.errors import InputError
    from data.tasks import get_task
    from rspg.selection_data import read_records
    from rspg.selector import load_selector, saved_facts
    from rspg.training import TrainSettings, train
    from runtime.distributed import processes, setup_logging
    from runtime.run_folder import trainable_parameters, write_run_config, write_training_info

    spec = get_task(args.task)
    train_records = read_records(args.train_data) if args.do_train else None
    val_records = read_records(args.val_data) if args.val_data else None
    if args.do_validation:
        facts = saved_facts(args.model_path)
        if facts["rspg_type"] != args.rspg_type:
            raise InputError(f"{args.model_path}: a {facts['rspg_type']} selector, but --rspg_type {args.rspg_type}")
    else:
        facts = {"retrievers": train_records[0]["retrievers"], "metric": train_records[0]["metric"]}
    if val_records and val_records[0]["retrievers"] != facts["retrievers"]:
        raise InputError(f"{args.val_data}: retrievers {val_records[0]['retrievers']} differ from the "
                         f"selector's {facts['retrievers']}")

    run_dir = args.checkpoint_dir / args.name
    setup_logging(run_dir)
    dist = processes(args.device)      # under torchrun / accelerate launch: the group, this rank's device
    if dist.is_main_process:
        write_run_config(run_dir, args, "rspg", world_size=dist.world_size)
    if args.do_train:
        selector = load_selector(args.encoder, args.max_length_input, args.device, args.seed)
        settings = TrainSettings(rspg_type=args.rspg_type, learning_rate=args.learning_rate,
                                 total_steps=args.total_steps, batch_size=args.per_gpu_batch_size,
                                 temperature=args.temperature, clip=args.clip, save_freq=args.save_freq,
                                 seed=args.seed)
        log.info("training RSPG-%s on %d questions x %d retrievers (%s), %d process(es)", args.rspg_type,
                 len(train_records), len(facts["retrievers"]), ", ".join(facts["retrievers"]), dist.world_size)
        losses = train(selector, train_records, spec, settings, run_dir)
        if dist.is_main_process:
            model_dir = selector.save(run_dir / "model", rspg_type=args.rspg_type, task=spec.name, **facts)
            write_training_info(run_dir, trainable_parameters(selector))
            window = max(1, len(losses) // 10)
            print(f"loss: first {window} steps {sum(losses[:window]) / window:.4f}, "
                  f"last {window} steps {sum(losses[-window:]) / window:.4f}")
            print(f"model: {model_dir}")
    else:
        selector = load_selector(str(args.model_path), args.max_length_input, args.device)
    if val_records and dist.is_main_process:
        validate(selector, val_records, args, run_dir)
    dist.barrier()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
