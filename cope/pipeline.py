"""CoPe's steps on one model in memory (spec curp_cope_oppu 3): the TAM, per-user adapters, decoding.

The base model is loaded once and the TAM adapter is merged into it, so "the TAM" is simply the model
with no adapter; each target user's LoRA adapter is added on top by name, trained on that user's history
alone, saved into the user's folder of a ``runtime.users`` run and deleted again before the next user
(never stacked, never trained on another user's items). Contrastive decoding and negative scoring then
contrast the user's adapter with the adapter switched off - the same weights, not a second copy.

Folders below the output root (``--output_dir``)::

    TAM/adapter/                 the task-adapted LoRA (TAM/ itself is the TAM's run folder with --is_test)
    adapters/OPPU_SFT/users/<user>/adapter/        per-user SFT adapters (a runtime.users run)
    adapters/OPPU_SFT+DPO/users/<user>/adapter/    the same after DPO
    pseudo_negatives/users/<user>/negatives.json   sampled candidates per history item
    scores_<max|min>/users/<user>/selection.json   their scores and the chosen negative
    <variant>/                   per-user predictions merged into a run folder with scores.json
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cope.data import User, item_prompt, item_target, query_prompt
from data.errors import InputError, input_error
from data.fingerprint import fingerprint, folder_fingerprint
from data.io import read_json
from lm.loading import save_model_folder, uses_vllm
from runtime.distributed import is_main_process
from runtime.generation import postprocess
from runtime.run_folder import PREDICTIONS_FILE, trainable_parameters, write_scores, write_training_info
from runtime.users import MANIFEST_FILE, Shard, done_marker, run_users, user_folder

log = logging.getLogger("lampkit.cope")

TAM_ADAPTER = "tam"
MERGED_TAM_DIR = "TAM_merged"     # <root>/TAM_merged/<TAM stamp>/: the TAM as a full model, for vLLM
USER_ADAPTER = "user"        # the one per-user adapter on the model at any time
SFT_STAGE, DPO_STAGE = "OPPU_SFT", "OPPU_SFT+DPO"
ADAPTER_DIR = "adapter"
# LoRA shapes of the reference (spec curp_cope_oppu 3.4, 3.5).
TAM_LORA = {"r": 16, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
USER_LORA = {"r": 8, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
# Sampling of --is_sampling and of pseudo-negatives (spec 3.5, 3.6).
PSEUDO_NEGATIVE_TOP_P = 0.95


# ----------------------------------------------------------------------------- folders and stamps

def tam_folder(root: Path) -> Path:
    return Path(root) / "TAM" / ADAPTER_DIR


def stage_root(root: Path, stage: str) -> Path:
    return Path(root) / "adapters" / stage


def user_adapter_folder(stage: Path, user: str) -> Path:
    """The ONE path of a user's adapter, used to save it and to load it (the reference saves to one folder
    and loads from another, spec 5)."""
    return user_folder(stage, user) / ADAPTER_DIR


def finished_run_key(stage: Path, users: Sequence[User], needed_by: str) -> str:
    """The run key of a per-user stage whose every user in ``users`` is done, else a one-line error."""
    manifest = stage / MANIFEST_FILE
    if not manifest.is_file():
        raise input_error(manifest, f"file not found: run the step that makes it before {needed_by}")
    key = read_json(manifest).get("key")
    missing = [user.name for user in users if done_marker(stage, user.name, key) is None]
    if missing:
        raise input_error(stage, f"{len(missing)} users are not done yet, e.g. {missing[0]!r}; finish this step "
                                 f"before {needed_by}")
    return key


# ----------------------------------------------------------------------------- models

def lora(shape: Mapping[str, Any]):
    from lm.adapters import LoraOptions

    return LoraOptions(**shape)


def load_task_model(model_options, root: Path):
    """The base model with the TAM merged in (one copy of the weights) and the TAM's stamp."""
    folder = tam_folder(root)
    if not (folder / "adapter_config.json").is_file():
        raise input_error(folder, "no trained TAM here: run python -m cope.tam --is_train first")
    handle = model_options.load(backend="hf")
    base, stamp = handle.weights_id, folder_fingerprint(folder)
    handle.load_adapter(TAM_ADAPTER, folder)
    handle.merge_adapter(TAM_ADAPTER)
    # Named by the base and the TAM's files, so outputs cached under it are found again by the next process.
    handle.weights_id = f"{base}|merged-tam:{stamp}"
    return handle, stamp


def load_sampling_model(model_options, root: Path):
    """The TAM to sample pseudo-negatives from: on vLLM when that is the backend (``--backend vllm``, or auto
    with vLLM and a GPU), else the merged Hugging Face model."""
    if not uses_vllm(model_options.backend, model_options.device):
        return load_task_model(model_options, root)
    return load_served_task_model(model_options, root)


def load_decoding_model(model_options, root: Path, stage: Path, users: Sequence[User], decoding):
    """The TAM that decodes every user's queries with that user's adapter from ``stage``. On vLLM (when that
    is the backend) the adapters are served as LoRA requests on the one merged TAM: ``users_per_batch`` of
    them per generate call, the rank bucket from their adapter_config.json files. Contrastive decoding (two
    views of the model per step) has no vLLM form, so it says so and runs on the merged HF model."""
    from lm.vllm_backend import LoraServing

    if not uses_vllm(model_options.backend, model_options.device):
        return load_task_model(model_options, root)
    if decoding.is_cd:
        log.warning("vLLM backend: contrastive decoding (--is_cd) needs two views of the model per step, which "
                    "vLLM cannot do; decoding with Hugging Face")
        return load_task_model(dataclasses.replace(model_options, backend="hf"), root)
    folders = [user_adapter_folder(stage, user.name) for user in users]
    lora = LoraServing.for_adapters(folders, max_loras=min(decoding.users_per_batch, len(users)))
    log.info("vLLM serves the users' adapters as LoRA requests: max_loras %d, max_lora_rank %d",
             lora.max_loras, lora.max_lora_rank)
    return load_served_task_model(model_options, root, lora)


def load_served_task_model(model_options, root: Path, lora=None):
    """The TAM on a vLLM engine (with ``lora``: serving LoRA adapters), and its stamp. vLLM serves full model
    folders, so the merged TAM is saved once as one; the merge runs on Hugging Face on one device."""
    handle, stamp = load_task_model(dataclasses.replace(model_options, backend="hf", tensor_parallel_size=1), root)
    folder = root / MERGED_TAM_DIR / stamp
    if not (folder / "config.json").is_file():
        save_model_folder(handle, folder)
    del handle                            # one copy of the weights: vLLM's
    return dataclasses.replace(model_options, model_name=str(folder)).load(backend="vllm", lora=lora), stamp


def train_tam(handle, spec, examples, options, folder: Path) -> dict:
    """SFT of the TAM adapter on non-target users' (input, gold) pairs, saved into ``folder``."""
    from lm.train import train_sft

    handle.add_adapter(TAM_ADAPTER, lora(TAM_LORA), replace=True)
    metrics = train_sft(handle, [query_prompt(spec, example) for example in examples],
                        [example.target for example in examples], adapter=TAM_ADAPTER, options=options)
    if is_main_process():     # under DDP every rank holds the same adapter; rank 0 writes it
        # A folder cut by a kill has no matching trained.json beside it (cope.tam), so it is trained again.
        shutil.rmtree(folder, ignore_errors=True)
        handle.save_adapter(TAM_ADAPTER, folder)
        write_training_info(folder.parent, trainable_parameters(handle.model))   # beside the adapter, as per user
    return metrics


# ----------------------------------------------------------------------------- per-user training

def sft_user(handle, spec, user: User, options, folder: Path) -> None:
    """A fresh adapter trained on this user's history items alone, saved into ``folder``."""
    from lm.train import train_sft

    from transformers import set_seed

    if not user.profile:
        raise InputError(f"user {user.name!r} has no history items to train an adapter on")
    # The adapter's random start depends on the seed alone, not on the users trained before it in this
    # process, so a user's adapter is the same whatever shard (--num_shards, torchrun rank) trains it.
    set_seed(options.seed)
    handle.add_adapter(USER_ADAPTER, lora(USER_LORA), replace=True)
    try:
        train_sft(handle, [item_prompt(spec, item) for item in user.profile],
                  [item_target(spec, item) for item in user.profile], adapter=USER_ADAPTER, options=options)
        handle.save_adapter(USER_ADAPTER, folder)
        # in the user's folder, beside the adapter: the run's training.json files sum over its users
        write_training_info(folder.parent, trainable_parameters(handle.model))
    finally:
        handle.delete_adapter(USER_ADAPTER)


def dpo_user(handle, spec, user: User, selection: Sequence[Mapping], sft_folder: Path, options, beta: float,
             folder: Path) -> None:
    """DPO of the user's SFT adapter on (history output, chosen negative); reference = the TAM (adapter off)."""
    from lm.train import train_dpo

    items = {item["id"]: item for item in user.profile}
    pairs = [(items[row["id"]], row["negative_response"]) for row in selection if row["id"] in items]
    if not pairs:
        raise InputError(f"user {user.name!r}: no history item with a chosen negative")
    handle.load_adapter(USER_ADAPTER, sft_folder, replace=True, trainable=True)
    try:
        train_dpo(handle, [item_prompt(spec, item) for item, _ in pairs],
                  [item_target(spec, item) for item, _ in pairs], [negative for _, negative in pairs],
                  adapter=USER_ADAPTER, options=options, beta=beta)
        handle.save_adapter(USER_ADAPTER, folder)
        write_training_info(folder.parent, trainable_parameters(handle.model))
    finally:
        handle.delete_adapter(USER_ADAPTER)


def run_user_training(stage: Path, users: Sequence[User], train: Callable[[User, Path], None], key: Any,
                      shard: Shard) -> None:
    """``train(user, adapter_folder)`` for each user of this shard not done with ``key`` (resumable)."""
    by_name = {user.name: user for user in users}

    def work(name: str, folder: Path) -> None:
        train(by_name[name], folder / ADAPTER_DIR)

    run_users(stage, list(by_name), work, key=key, shard=shard, desc="users trained")


# ----------------------------------------------------------------------------- decoding

def decode_user(handle, spec, user: User, decoding, seed: int, contrastive: bool,
                clean: bool = True) -> dict[str, str]:
    """The user's queries decoded with the loaded user adapter: plain, or contrasted with the TAM.
    ``clean``: the runtime's post-processing (False: the raw new text, as bench/bench_cope_cd.py counts it)."""
    return decode_users(handle, spec, [user], [USER_ADAPTER], decoding, seed, contrastive, clean)[user.name]


def decode_users(handle, spec, users: Sequence[User], adapters: Sequence[str], decoding, seed: int,
                 contrastive: bool, clean: bool = True) -> dict[str, dict[str, str]]:
    """Every user's queries in shared batches on the one base model, each query with its own user's loaded
    adapter (``adapters``, one per user): plain, or contrasted with the TAM (adapter off) in the two-view
    loop with one doubled forward per step. Returns {user: {query id: output}}."""
    from lm.decoding import BASE, ContrastiveCombine, View, two_view_generate

    queries = [(user.name, adapter, example) for user, adapter in zip(users, adapters, strict=True)
               for example in user.queries]
    prompts = [query_prompt(spec, example) for _, _, example in queries]
    owners = [adapter for _, adapter, _ in queries]
    options = {**decoding.generate_kwargs(spec), "seed": seed, "batch_size": decoding.inference_batch_size,
               "progress": False}
    if contrastive:
        texts = two_view_generate(View(handle), View(handle, BASE), prompts,
                                  ContrastiveCombine(alpha=decoding.contrastive_alpha), row_adapters=owners,
                                  **options)
    else:
        texts = handle.generate(prompts, adapter_names=owners, **options)
    outputs: dict[str, dict[str, str]] = {user.name: {} for user in users}
    for (name, _, example), text in zip(queries, texts):
        outputs[name][example.id] = postprocess(spec, text) if clean else text
    return outputs


def predict_users(handle, spec, users: Sequence[User], stage: Path, run_dir: Path, decoding, seed: int,
                  key: Any, shard: Shard) -> dict[str, float]:
    """Per-user predictions with each user's adapter from ``stage`` into the run folder ``run_dir``
    (resumable per user); scores.json once every user is done. Returns the metrics ({} until then).

    Up to ``decoding.users_per_batch`` users not done yet decode together: their adapters are loaded side by
    side on the one base model and their queries share batches (each row with its own adapter)."""
    by_name = {user.name: user for user in users}
    run_key = fingerprint(key)
    pending = [name for name in shard.users(list(by_name)) if done_marker(run_dir, name, run_key) is None]
    decoded: dict[str, dict[str, str]] = {}

    def work(name: str, folder: Path) -> dict[str, str]:
        if name not in decoded:   # the first user of a group decodes the whole group
            group = pending[pending.index(name):][:decoding.users_per_batch]
            adapters = [f"{USER_ADAPTER}_{position}" for position in range(len(group))]
            try:
                for user, adapter in zip(group, adapters):
                    handle.load_adapter(adapter, user_adapter_folder(stage, user), replace=True)
                decoded.update(decode_users(handle, spec, [by_name[user] for user in group], adapters, decoding,
                                            seed, contrastive=decoding.is_cd))
            finally:
                for adapter in adapters:
                    if adapter in handle.adapters:
                        handle.delete_adapter(adapter)
        return decoded.pop(name)

    run_users(run_dir, list(by_name), work, key=key, shard=shard, task=spec.name, desc="users decoded")
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file() or not all(done_marker(run_dir, name, run_key) for name in by_name):
        return {}
    from data.loaders import read_golds

    predictions = read_golds(path, spec.name)[1]
    golds = {example.id: example.target for user in users for example in user.queries}
    if any(gold is None for gold in golds.values()):
        log.info("some queries have no gold; not scoring")
        return {}
    print(f"predictions: {path}")
    return write_cope_scores(run_dir, spec, golds, predictions)


def write_cope_scores(run_dir: Path, spec, golds: Mapping[str, str], predictions: Mapping[str, str]) -> dict:
    """scores.json with the task's metrics plus, for generation tasks, METEOR (CoPe reports ROUGE-1,
    ROUGE-L and METEOR for every task, spec curp_cope_oppu 3.10)."""
    from eval.scoring import metric_values, score_predictions

    extra = {}
    if spec.kind == "generation" and "meteor" not in spec.metrics:
        extra = metric_values(score_predictions(spec.name, golds, predictions, metrics=["meteor"]))
    return write_scores(run_dir, spec.name, golds, predictions, extra_metrics=extra)
