"""The user-profile role study (Wu et al. 2024, "Understanding the Role of User Profile in the
Personalization of LLMs", arXiv 2406.17803): which profile items, which of their fields and which order.

The study's own command lines run unchanged (spec profile_study A3), e.g.

    python -m lamp_rag.profile_study --task_name LaMP_4 --task_pattern user-based --retrieval_id BM25 \\
        --retrieval_num 3 --training_epoch 2 --model_id path/to/flan-t5-base --raw_data_folder_path ../data/LaMP
    # zero-shot: BM25 top-3, outputs only, best item in the middle of the context
    python -m lamp_rag.profile_study --task_name LaMP_4 --no_do_train --do_eval --retrieval_num 3 \\
        --retrieval_ablation only_output --retrieval_order middle
    # inputs of the user's BM25 items with the outputs of random own items
    python -m lamp_rag.profile_study --task_name LaMP_5 --retrieval_id Mixed --input_retrieval_id BM25 \\
        --output_retrieval_id Random --retrieval_num 2 --do_train false --do_eval true

Data: <raw_data_folder_path>/<task_pattern>/<task_name>/ holds {train,dev}_questions.json and
{train,dev}_outputs.json (test_* for --do_predict); user-based data may also sit in
<raw_data_folder_path>/<task_name>/ (the default, the embedded sample data/sample, is laid out so).
--task_pattern time-based without a time-based folder is an error. The dev split is the evaluation split,
as in the study; train + dev users form the pool of the cross-user retrievals. --task_name All runs every
task with the study's prompts that has data there.

What runs: --do_train (on by default, as in the study) fine-tunes --training_epoch epochs (default 10)
on train with the best epoch on dev (LaMP_2 by F1, as the study; other tasks by the registry's metric),
then scores dev with it; --no_do_train --do_eval scores dev zero-shot; --do_predict also generates test.
Training defaults are the study's (lr 5e-5, weight decay 1e-3, --batch_size 6 for training and
generation, 4 beams, warmup 0.05, full fine-tuning); --output_max_length (512) cuts the gold outputs for
training and bounds the generated ones; --fp16 loads the model in float16.

Prompts are the study's own (spec A6): the profile gets input_max_length - task_max_length tokens (256 by
default). --retrieval_ablation both cuts every item to its share; only_output / decouple cut the block of
outputs as a whole; the input follows and the prompt is cut to the input_max_length window from the
right, so the question is never pushed out by the profile. Selection semantics (spec A4-A7): see
lamp_rag/study.py. Options that change nothing in the chosen setting (e.g. --retrieval_order random with
an ablation prompt) are reported as warnings.

Results go to <result_dir>/<model>/<retrieval_id>[_<ablation>][/<in>_<out>]/<task_pattern>/<task>/
<k>[_<target>][/<order>][/seed<s>], fine-tuned runs to a subfolder named after the training settings,
ft_lr<lr>_wd<wd>_bs<batch>_warmup<ratio>_seed<seed>[_lora] (rerun with more --training_epoch to extend a run):
config.json, selection.json (the item ids of every dev prompt, in prompt order), predictions.json,
scores.json (dev), test/ (--do_predict), run.log (and checkpoints/, best_model/, validation/ when training).
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from typing import Sequence

from data.cli import (REPO_ROOT, GenerationOptions, ModelOptions, add_dataclass_arguments, add_model_arguments,
                      bookkeeping_path, from_args, parse_args, run, setup_logging)
from data.errors import InputError, input_error
from lamp_rag.options import FinetuneSettings, InputOptions
from lamp_rag.study import StudyOptions, StudySettings
from lamp_rag.training import TrainingOptions

log = logging.getLogger("lampkit.lamp_rag")
# The study's training settings where they differ from train_llm's (spec A3, A8).
STUDY_TRAINING_DEFAULTS = {"weight_decay": 1e-3, "per_device_batch_size": 6, "generation_max_length": 512,
                           "save_total_limit": 1, "logging_steps": 500}
# The study's spelling of train_llm's flags.
STUDY_TRAINING_FLAGS = {"per_device_batch_size": ("--batch_size", "--per_device_batch_size"),
                        "generation_max_length": ("--output_max_length", "--generation_max_length")}
# Generation flags that the training options set in the study (beams, length, batch, seed).
FROM_TRAINING = ("max_new_tokens", "num_beams", "batch_size", "seed")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.profile_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, StudyOptions, "study run")
    add_dataclass_arguments(parser, InputOptions, "data")
    add_dataclass_arguments(parser, StudySettings, "profile selection")
    add_model_arguments(parser, "--model_id", "--model_name", hf_cache_dir=True)
    add_dataclass_arguments(parser, FinetuneSettings, "training (--do_train)",
                            flags={"num_train_epochs": ("--training_epoch", "--num_train_epochs")})
    add_dataclass_arguments(parser, TrainingOptions, "training hyperparameters (the study's defaults)",
                            defaults=STUDY_TRAINING_DEFAULTS, flags=STUDY_TRAINING_FLAGS)
    add_dataclass_arguments(parser, GenerationOptions, "generation (beams, length, batch: the training options)",
                            exclude=FROM_TRAINING)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from lamp_rag.study import study_tasks

    options, settings = from_args(StudyOptions, args), from_args(StudySettings, args)
    options.check()
    settings.check()
    finetune = from_args(FinetuneSettings, args)
    dtype = from_args(ModelOptions, args).dtype
    if options.fp16 and dtype not in (None, "float16"):
        raise InputError(f"--fp16 loads the model in float16, but --dtype says {dtype}")
    if options.do_train and finetune.num_train_epochs <= 0:
        raise InputError("--do_train needs --training_epoch > 0 (zero-shot: --no_do_train --do_eval)")
    root = options.raw_data_folder_path or REPO_ROOT / "data" / "sample"
    for task in study_tasks(options, root):
        run_task(args, task, root)
    return 0


def run_task(args: argparse.Namespace, task: str, root) -> None:
    """One task of the study under the parsed options: select, prompt, train and/or evaluate, write results."""
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.pipeline import prompt_cut_options
    from lamp_rag.study import (StudySelector, data_folder, outputs_file, prompt_template, questions_file,
                                result_dir, study_prompts, study_task)

    options, settings = from_args(StudyOptions, args), from_args(StudySettings, args)
    model, finetune = from_args(ModelOptions, args), from_args(FinetuneSettings, args)
    training = from_args(TrainingOptions, args)
    spec = study_task(get_task(task))
    template = prompt_template(spec, settings.ablation)
    folder = data_folder(root, options.task_pattern, spec.name)
    splits = ["dev"] + (["train"] if options.do_train else []) + (["test"] if options.do_predict else [])
    if options.do_predict and not questions_file(folder, "test").is_file():
        raise input_error(folder, "no test_questions.json for --do_predict")
    if options.do_train and not questions_file(folder, "train").is_file():
        raise input_error(folder, "no train_questions.json for --do_train (zero-shot: --no_do_train --do_eval)")
    limit = from_args(InputOptions, args).limit
    examples = {split: load_examples(questions_file(folder, split), outputs_file(folder, split), task=spec.name,
                                     limit=limit)
                for split in splits}
    pool = [example for split in ("train", "dev") for example in examples.get(split, ())]
    if not pool:
        raise input_error(folder, "no questions")
    selected = {split: StudySelector(spec, settings, pool, stream=split).select(examples[split]) for split in splits}

    trained = None if not options.do_train else {
        "lr": training.learning_rate, "wd": training.weight_decay, "bs": training.per_device_batch_size,
        "warmup": training.warmup_ratio, "seed": training.seed, "lora": finetune.lora}
    output_dir = result_dir(options.result_dir, model.model_name, settings, options.task_pattern, spec.name, trained)
    setup_logging(output_dir)
    for note in ignored_options(args, options, settings, spec):
        log.warning(note)
    log.info("%s: %s, %s, template %s, data %s", spec.name, settings,
             ", ".join(f"{len(examples[s])} {s} questions" for s in splits), template, folder)

    from data.io import atomic_write_json
    from runtime.generation import generate_and_score
    from runtime.run_folder import write_run_config

    handle = model.load(backend="hf" if options.do_train else model.backend, dtype="float16" if options.fp16
                        else model.dtype, needs_hf=training.generation_num_beams > 1)
    # Bookkeeping like config.json: a run that fails before its outputs restores the earlier one.
    atomic_write_json(bookkeeping_path(output_dir / "selection.json"),
                      {example.id: [str(item["id"]) for item in items]
                       for example, items in zip(examples["dev"], selected["dev"])})
    write_run_config(output_dir, args, "lamp_rag.profile_study", task=spec.name, data_dir=str(folder),
                     prompt_template=template, best_metric=spec.best_metric)
    prompts = {split: study_prompts(spec, examples[split], items, handle.tokenizer, template,
                                    options.input_max_length, options.task_max_length)
               for split, items in selected.items()}
    generation = from_args(GenerationOptions, args).generate_kwargs(training.generation_max_length,
                                                                    training.generation_num_beams)
    generation.update(batch_size=training.per_device_batch_size, seed=training.seed,
                      **prompt_cut_options(options.input_max_length))
    model_id = None
    if options.do_train:
        from lamp_rag.training import finetune as run_finetune

        result = run_finetune(spec, handle, examples["train"], prompts["train"], examples["dev"], prompts["dev"],
                              output_dir, finetune.num_train_epochs, lora=finetune.lora,
                              merge_lora=finetune.merge_lora, max_prompt_tokens=options.input_max_length,
                              **asdict(training))
        handle, model_id = result.handle, result.best_checkpoint
        print(f"best checkpoint ({spec.best_metric}): {result.best_checkpoint}")
    if options.do_train or options.do_eval:
        scores = generate_and_score(spec, handle, examples["dev"], prompts["dev"], output_dir, generation,
                                    model_id=model_id)
        for name, value in scores.items():
            print(f"{spec.name} dev {name}: {value:.4f}")
    if options.do_predict:
        scores = generate_and_score(spec, handle, examples["test"], prompts["test"], output_dir / "test", generation,
                                    model_id=model_id)
        for name, value in scores.items():
            print(f"{spec.name} test {name}: {value:.4f}")
    print(f"results: {output_dir}")


def ignored_options(args: argparse.Namespace, options: StudyOptions, settings: StudySettings, spec) -> list[str]:
    """Warnings for options that change nothing in this run."""
    notes = settings.ignored_options(spec)
    if options.do_train and options.do_eval:
        notes.append("--do_eval adds nothing to --do_train, which already scores dev with the best checkpoint")
    if not options.do_train:
        defaults = make_parser().parse_args([])
        used = {*FROM_TRAINING, "generation_max_length", "generation_num_beams", "per_device_batch_size", "seed"}
        changed = [name for name in (*vars(TrainingOptions()), *vars(FinetuneSettings()))
                   if name not in used and getattr(args, name) != getattr(defaults, name)]
        if changed:
            notes.append(f"{', '.join('--' + name for name in changed)} do nothing without --do_train")
    return notes


if __name__ == "__main__":
    raise SystemExit(run(main))
