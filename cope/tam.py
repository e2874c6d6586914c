"""CoPe step 1: the task-adapted model (TAM), a LoRA adapter trained on the NON-target users only
(spec curp_cope_oppu 3.4: r 16, alpha 16 on q,k,v,o; 3 epochs, lr 1e-4, batch 8).

    python -m cope.tam --task_name news_headline --data_path DIR --model_name default --batch_size 8 \\
        --max_epoch 3 --is_train
    python -m cope.tam --task_name news_headline --data_path DIR --is_test     # the TAM row of the table

--is_train trains on the (input, gold) queries of user_others.json and saves <output_dir>/TAM/adapter/
(a rerun with the same data and settings keeps it). --is_test decodes the target users' queries with the
TAM merged into the base; <output_dir>/TAM/ is then a run folder (predictions.json, scores.json),
resumable batch by batch.

The TAM is one model trained on every non-target query, so under torchrun --nproc_per_node N (or
accelerate launch) Trainer trains it with DDP and rank 0 alone writes the adapter, its marker and the
configs; --is_test then decodes on rank 0 (docs/scaling.md).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from data.cli import ModelOptions, from_args, parse_args, run, write_config
from data.errors import InputError
from data.fingerprint import fingerprint
from data.io import atomic_write_json, read_json
from runtime.distributed import is_main_process


def make_parser():
    from cope.options import make_parser as cope_parser

    parser = cope_parser("python -m cope.tam", __doc__, shards=False,
                         decoding_exclude=("is_cd", "contrastive_alpha", "run_name"))
    parser.add_argument("--is_test", action="store_true", help="decode the target users' queries with the TAM")
    return parser


TRAINED_FILE = "trained.json"     # beside the adapter: the key it was trained with


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from cope.options import DecodingSettings, TrainingSettings, parsed
    from cope.pipeline import tam_folder

    data, model = parsed(args)
    if not (args.is_train or args.is_test):
        raise InputError("python -m cope.tam: give --is_train, --is_test or both")
    folder = tam_folder(data.root())
    if args.is_train:
        train(args, data, model, folder)
    if args.is_test and is_main_process():
        test(args, data, model, from_args(DecodingSettings, args, is_cd=False),
             from_args(TrainingSettings, args).seed)
    return 0


def train(args, data, model: ModelOptions, folder) -> None:
    from cope.data import read_others
    from cope.pipeline import TAM_LORA, train_tam
    from cope.steps import open_run, training_options
    from runtime.distributed import processes

    spec, examples = read_others(data.data_path, data.task_name, data.num_others, data.max_words)
    options = training_options(args, spec)
    key = fingerprint({"model": model.model_name, "dtype": model.dtype, "lora": TAM_LORA,
                       "options": dataclasses.asdict(options), "data": [(e.id, e.input, e.target) for e in examples]})
    marker = folder.parent / TRAINED_FILE
    if (folder / "adapter_config.json").is_file() and marker.is_file() and read_json(marker).get("key") == key:
        if is_main_process():
            print(f"TAM already trained with these settings: {folder}")
        return
    if is_main_process():
        folder.parent.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)      # written again only once the new adapter is saved whole
    open_run(args, folder.parent)
    dist = processes(model.device)     # under torchrun / accelerate launch: the group, this rank's device
    if dist.is_main_process:
        write_config(folder.parent, args, filename="train_config.json", method="cope", world_size=dist.world_size)
    handle = model.load(backend="hf")
    metrics = train_tam(handle, spec, examples, options, folder)
    if dist.is_main_process:
        atomic_write_json(marker, {"key": key, "examples": len(examples), "metrics": metrics})
        print(f"TAM adapter ({len(examples)} non-target queries): {folder}")
    dist.barrier()      # the adapter is saved before any rank goes on


def test(args, data, model: ModelOptions, decoding, seed: int) -> None:
    from cope.pipeline import load_task_model
    from cope.data import query_prompt
    from cope.steps import open_run, target_users
    from cope.pipeline import write_cope_scores
    from data.loaders import write_predictions
    from runtime.generation import generate_outputs, postprocess
    from runtime.run_folder import PREDICTIONS_FILE

    spec, users = target_users(data)
    handle, stamp = load_task_model(model, data.root())
    run_dir = data.root() / "TAM"
    open_run(args, run_dir)
    examples = [example for user in users for example in user.queries]
    options = {**decoding.generate_kwargs(spec), "seed": seed, "batch_size": decoding.inference_batch_size}
    texts = generate_outputs(handle, [e.id for e in examples], [query_prompt(spec, e) for e in examples], run_dir,
                             options, adapter={"tam": stamp}, desc="TAM")
    predictions = {example.id: postprocess(spec, text) for example, text in zip(examples, texts)}
    print(f"predictions: {write_predictions(run_dir / PREDICTIONS_FILE, spec.name, predictions)}")
    golds = {example.id: example.target for example in examples}
    if None in golds.values():
        print("some queries have no gold: not scored")
        return
    metrics = write_cope_scores(run_dir, spec, golds, predictions)
    for name, value in metrics.items():
        print(f"{spec.name} TAM {name}: {value:.4f}")


if __name__ == "__main__":
    raise SystemExit(run(main))
