"""The user-profile role study (Wu et al. 2024, "Understanding the Role of User Profile in the
Personalization of LLMs", arXiv 2406.17803): which profile items, which of their fields and which order.

    # zero-shot, BM25 top-3, outputs only, best item in the middle of the context
    python -m lamp_rag.profile_study --task_name LaMP_4 --task_pattern user-based --retrieval_id BM25 \\
        --retrieval_num 3 --retrieval_ablation only_output --retrieval_order middle --training_epoch 0
    # fine-tune 2 epochs on the train split with items of random other users, then evaluate
    python -m lamp_rag.profile_study --task_name LaMP_2 --retrieval_id Full_Random --retrieval_num 2 \\
        --training_epoch 2 --model_name path/to/flan-t5-base
    # inputs of the user's BM25 items with the outputs of random own items
    python -m lamp_rag.profile_study --task_name LaMP_5 --retrieval_id Mixed --input_retrieval_id BM25 \\
        --output_retrieval_id Random --retrieval_num 2 --training_epoch 0

Data: --data_dir holds {train,dev}_questions.json and {train,dev}_outputs.json (default: the embedded
sample data/sample/<task>); a <task_pattern> (or <task_pattern>/<task>) subfolder is used when present.
The dev split is the evaluation split, as in the study; train + dev users form the pool of the
cross-user retrievals. --training_epoch 0 evaluates zero-shot; E > 0 fine-tunes on the train split
(best epoch on dev), then evaluates the best checkpoint.

Selection semantics (spec A4-A7, details in lamp_rag/study.py): BM25 is the study's own variant (extra
query-term-frequency factor, ln(1 + ...) idf, stable ties) with its leakage guard; 0 < k < 1 is a
fraction of the profile; --retrieval_target takes ranks [t, t+k) instead of the top k; RanBM25 draws
pseudo-profiles of the study's average profile size per task. Random draws are seeded ONCE per run and
split (--retrieval_random_seed); the study re-seeded every batch of 1000, which is not reproduced.
--retrieval_ablation picks the prompt: both -> the task's official template, only_output / decouple ->
"study_only_output", only_input -> "study_only_input"; it is ignored (both) for LaMP_1 and LaMP_7.
Prompts are the official LaMP strings (the ablations are defined on them).

Results go to <output_root>/<model>/<retrieval_id>[_<ablation>][/<in>_<out>]/<task_pattern>/<task>/
<k>[_<target>][/<order>][/seed<s>], fine-tuned runs to a subfolder named after the training settings,
ft_lr<lr>_wd<wd>_bs<batch>_warmup<ratio>_seed<seed>[_lora] (rerun with more --training_epoch to extend a run):
config.json, selection.json (the item ids of every prompt, in prompt order), predictions.json, scores.json,
run.log (and checkpoints/, best_model/ when fine-tuning).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (REPO_ROOT, add_generation_arguments, add_model_arguments, add_task_argument, bookkeeping_path,
                      generation_options, parse_args, run, setup_logging, writable_dir)
from data.errors import input_error
from lamp_rag.study import ABLATIONS, MIXED_SOURCES, ORDERS, RETRIEVAL_IDS

log = logging.getLogger("lampkit.lamp_rag")
SPLITS = ("train", "dev")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.profile_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    add_task_argument(data, "--task_name")
    data.add_argument("--task_pattern", default="user-based", choices=("user-based", "time-based"),
                      help="split type; selects a subfolder of --data_dir when present (default: %(default)s)")
    data.add_argument("--data_dir", type=Path, default=None,
                      help="folder with {train,dev}_{questions,outputs}.json (default: data/sample/<task>)")
    data.add_argument("--limit", type=int, default=None, help="use only the first N questions of each split")

    study = parser.add_argument_group("study")
    study.add_argument("--retrieval_id", default="BM25", choices=RETRIEVAL_IDS,
                       help="which items: the user's BM25 top-k, random own items, random items of other "
                            "users (Full_Random), BM25 over random other users' items (RanBM25), or Mixed")
    study.add_argument("--retrieval_num", type=float, default=1,
                       help="k items per prompt; 0 = no profile; 0 < k < 1 = that fraction of the profile "
                            "(BM25-based retrievals) (default: %(default)s)")
    study.add_argument("--retrieval_ablation", default="both", choices=ABLATIONS,
                       help="which fields the prompt shows: input+output pairs, inputs only, outputs only, "
                            "or outputs only with BM25 on the inputs (decouple) (default: %(default)s)")
    study.add_argument("--retrieval_order", default="start", choices=ORDERS,
                       help="best item first, last, in the middle, or a seeded shuffle (default: %(default)s)")
    study.add_argument("--retrieval_target", type=float, default=0,
                       help="take BM25 ranks [t, t+k) instead of the top k; t >= 1 is a rank, t < 1 a "
                            "fraction of the profile (default: %(default)s)")
    study.add_argument("--input_retrieval_id", default="Random", choices=MIXED_SOURCES,
                       help="Mixed: retrieval giving the items (their inputs) (default: %(default)s)")
    study.add_argument("--output_retrieval_id", default="Random", choices=MIXED_SOURCES,
                       help="Mixed: retrieval giving the output fields (default: %(default)s)")
    study.add_argument("--retrieval_random_seed", type=int, default=1, help="seed of every random draw "
                                                                           "(default: %(default)s)")
    study.add_argument("--pseudo_profile_size", type=int, default=None,
                       help="RanBM25: items per pseudo-profile (default: the study's average profile size "
                            "for the task, else the mean profile size of train + dev)")

    add_model_arguments(parser)
    parser.add_argument("--output_root", type=writable_dir, default=Path("runs/profile_study"),
                        help="results root; the run folder is named after the settings (default: %(default)s)")
    parser.add_argument("--max_length", type=int, default=256,
                        help="token budget of the prompt shared by input and profile (default: %(default)s)")
    training = parser.add_argument_group("training (--training_epoch > 0)")
    training.add_argument("--training_epoch", type=float, default=0,
                          help="0: zero-shot evaluation; E > 0: fine-tune E epochs first (default: %(default)s)")
    training.add_argument("--lora", action="store_true", help="train LoRA adapters (the study fine-tunes all "
                                                              "weights)")
    training.add_argument("--learning_rate", type=float, default=5e-5, help="(default: %(default)s)")
    training.add_argument("--weight_decay", type=float, default=1e-3, help="(default: %(default)s, the study's)")
    training.add_argument("--per_device_batch_size", type=int, default=6, help="(default: %(default)s)")
    training.add_argument("--warmup_ratio", type=float, default=0.05, help="(default: %(default)s)")
    training.add_argument("--max_steps", type=int, default=-1,
                          help="stop training after N steps (-1: all epochs) (default: %(default)s)")
    add_generation_arguments(parser)
    parser.set_defaults(num_beams=4)        # the study generates with 4 beams
    return parser


def study_settings(args: argparse.Namespace):
    from lamp_rag.study import StudySettings

    settings = StudySettings(retrieval_id=args.retrieval_id, k=args.retrieval_num, ablation=args.retrieval_ablation,
                             order=args.retrieval_order, target=args.retrieval_target,
                             seed=args.retrieval_random_seed, input_retrieval_id=args.input_retrieval_id,
                             output_retrieval_id=args.output_retrieval_id,
                             pseudo_profile_size=args.pseudo_profile_size)
    settings.check()
    return settings


def data_folder(data_dir: Path | None, task_pattern: str, task_name: str) -> Path:
    """The folder with the split files: <data_dir>/<pattern>/<task>, <data_dir>/<pattern> or <data_dir>."""
    base = data_dir if data_dir is not None else REPO_ROOT / "data" / "sample" / task_name
    for folder in (base / task_pattern / task_name, base / task_pattern, base):
        if _questions_file(folder, "dev").is_file():
            return folder
    raise input_error(base, f"no dev_questions.json here or in {task_pattern}/ (pass --data_dir)")


def _questions_file(folder: Path, split: str) -> Path:
    """``<split>_questions.json``, or ``.jsonl`` (the study's LaMP_3 train file)."""
    path = folder / f"{split}_questions.json"
    return path if path.is_file() or not path.with_suffix(".jsonl").is_file() else path.with_suffix(".jsonl")


def _outputs_file(folder: Path, split: str) -> Path | None:
    path = folder / f"{split}_outputs.json"
    return path if path.is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.study import StudySelector, effective_ablation, prompt_template, result_dir

    settings = study_settings(args)
    spec = get_task(args.task)
    folder = data_folder(args.data_dir, args.task_pattern, spec.name)
    examples = {split: load_examples(_questions_file(folder, split), _outputs_file(folder, split), task=spec.name,
                                     limit=args.limit)
                for split in SPLITS if split == "dev" or _questions_file(folder, split).is_file()}
    if args.training_epoch > 0 and "train" not in examples:
        raise input_error(folder, "no train_questions.json to fine-tune on (use --training_epoch 0)")
    pool = [example for split in SPLITS for example in examples.get(split, ())]
    selected = {split: StudySelector(spec, settings, pool, stream=split).select(examples[split])
                for split in examples if split == "dev" or args.training_epoch > 0}

    training = None if args.training_epoch <= 0 else {
        "lr": args.learning_rate, "wd": args.weight_decay, "bs": args.per_device_batch_size,
        "warmup": args.warmup_ratio, "seed": args.seed, "lora": args.lora}
    output_dir = result_dir(args.output_root, args.model_name, settings, args.task_pattern, spec.name, training)
    setup_logging(output_dir)
    ablation = effective_ablation(spec, settings.ablation)
    if ablation != settings.ablation:
        log.warning("%s has no prompt for the %r ablation (the study ignores ablations for LaMP_1 and LaMP_7): "
                    "using 'both'", spec.name, settings.ablation)
    template = prompt_template(spec, settings.ablation)
    log.info("%s: %s, %d dev questions, %s items, template %s, data %s", spec.name, settings, len(examples["dev"]),
             sum(map(len, selected["dev"])), template, folder)

    from data.io import atomic_write_json
    from lamp_rag.pipeline import build_prompts, prompt_cut_options
    from runtime.generation import generate_and_score
    from runtime.run_folder import write_run_config
    from lm import load_model

    handle = load_model(args.model_name, device=args.device, dtype=args.dtype,
                        backend="hf" if args.training_epoch > 0 else args.backend, needs_hf=args.num_beams > 1)
    # Bookkeeping like config.json: a run that fails before its outputs restores the earlier one.
    atomic_write_json(bookkeeping_path(output_dir / "selection.json"),
                      {example.id: [str(item["id"]) for item in items]
                       for example, items in zip(examples["dev"], selected["dev"])})
    write_run_config(output_dir, args, "lamp_rag.profile_study", data_dir=str(folder), effective_ablation=ablation,
                     prompt_template=template)
    prompts = {split: build_prompts(spec, examples[split], items, "official", handle.tokenizer, args.max_length,
                                    template=template)
               for split, items in selected.items()}
    generation = generation_options(args, spec.max_new_tokens)
    generation.update(prompt_cut_options(args.max_length))   # the study's prompts are always official-style
    model_id = None
    if args.training_epoch > 0:
        from lamp_rag.training import finetune

        result = finetune(spec, handle, examples["train"], prompts["train"], examples["dev"], prompts["dev"],
                          output_dir, args.training_epoch, lora=args.lora, learning_rate=args.learning_rate,
                          weight_decay=args.weight_decay, per_device_batch_size=args.per_device_batch_size,
                          warmup_ratio=args.warmup_ratio, max_steps=args.max_steps,
                          generation_max_length=generation["max_new_tokens"],
                          generation_num_beams=generation["num_beams"], seed=args.seed,
                          max_prompt_tokens=args.max_length)
        handle, model_id = result.handle, result.best_checkpoint
        print(f"best checkpoint: {result.best_checkpoint}")
    scores = generate_and_score(spec, handle, examples["dev"], prompts["dev"], output_dir, generation,
                                model_id=model_id)
    for name, value in scores.items():
        print(f"{spec.name} dev {name}: {value:.4f}")
    print(f"results: {output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
