"""Named LoRA adapters on ONE base model: add, save, load, delete, merge, and per-row adapter choice.

The first adapter wraps ``handle.model`` in a ``peft.PeftModel``; every later one is added beside it, so
16 users' adapters share one copy of the base weights. A new adapter starts from PEFT's LoRA init (B = 0:
no effect), never from the previous user's weights. Generation and scoring pass PEFT's per-row
``adapter_names`` (``BASE`` = "__base__" for no adapter), so rows of one batch can use different adapters;
with the last adapter deleted the model is unwrapped again. Saved folders hold the adapter weights only and
load with plain ``peft.PeftModel.from_pretrained(base_model, folder)``::

    handle.add_adapter("user_1", LoraOptions(r=8))
    lm.train.train_sft(handle, prompts, targets, adapter="user_1")
    handle.save_adapter("user_1", "runs/x/adapters/user_1")
    handle.generate(prompts, adapter_names=["user_1", "__base__", ...])
    handle.with_adapter("user_1").generate(prompts)      # a view whose default adapter is user_1
"""
from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from data.errors import InputError, input_error

log = logging.getLogger(__name__)

BASE = "__base__"        # PEFT's adapter name for rows that use the base model alone
ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass
class LoraOptions:
    """A LoRA adapter's shape; the defaults follow the LaMP reference fine-tuning."""

    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "modules to adapt (default: peft's choice for the model type, e.g. q v for T5)"})
    zero_init: bool = field(default=True, metadata={
        "help": "start with no effect (B = 0); False: a random non-zero update (tests, benchmarks)"})

    def config(self, model, is_encoder_decoder: bool):
        from peft import LoraConfig, TaskType

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules or lora_target_modules(model),
                          init_lora_weights=self.zero_init,
                          task_type=TaskType.SEQ_2_SEQ_LM if is_encoder_decoder else TaskType.CAUSAL_LM)


def lora_target_modules(model) -> list[str]:
    """peft's LoRA targets for the model's type: attention query and value projections."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    model_type = model.config.model_type
    if model_type not in TARGETS:
        raise InputError(f"no default LoRA target modules for model type {model_type!r}; "
                         f"give --lora_target_modules")
    return list(TARGETS[model_type])


def adapter_list(model) -> list[str]:
    """Names of the adapters on ``model`` (empty for a plain model)."""
    return list(getattr(model, "peft_config", {})) if _is_peft(model) else []


def active_adapter(model) -> str | None:
    """The PEFT model's active adapter (None for a plain model)."""
    return model.active_adapter if _is_peft(model) and adapter_list(model) else None


def add_adapter(handle, name: str, options: LoraOptions | None = None, replace: bool = False) -> None:
    """Add a fresh LoRA adapter ``name``; ``replace`` drops an existing one of that name first."""
    from peft import get_peft_model

    check_new_adapter_name(handle, name, replace)
    config = (options or LoraOptions()).config(_base_model(handle.model), handle.is_encoder_decoder)
    if _is_peft(handle.model):
        handle.model.add_adapter(name, config)
    else:
        _replace_model(handle, get_peft_model(handle.model, config, adapter_name=name))
    handle.model.eval()
    log.info("adapter %r: LoRA r=%d alpha=%d on %s", name, config.r, config.lora_alpha,
             ", ".join(sorted(config.target_modules)))


def load_adapter(handle, name: str, folder: str | os.PathLike, replace: bool = False,
                 trainable: bool = False) -> None:
    """Load a saved adapter folder (``save_adapter`` or any PEFT LoRA folder) as adapter ``name``."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG_FILE).is_file():
        raise input_error(folder, f"no {ADAPTER_CONFIG_FILE} here, so not a saved adapter")
    check_new_adapter_name(handle, name, replace)
    if _is_peft(handle.model):
        handle.model.load_adapter(str(folder), adapter_name=name, is_trainable=trainable)
    else:
        _replace_model(handle, PeftModel.from_pretrained(handle.model, str(folder), adapter_name=name,
                                                         is_trainable=trainable))
    handle.model.eval()


def save_adapter(handle, name: str, folder: str | os.PathLike) -> Path:
    """Write adapter ``name`` alone (adapter_model.safetensors + adapter_config.json) into ``folder``.

    Other files in ``folder`` stay (a Trainer checkpoint); each written file appears whole (renamed into place).
    """
    _require(handle, [name])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".adapter.tmp-"))
    try:
        handle.model.save_pretrained(str(staging), selected_adapters=[name])
        # PEFT puts every adapter but "default" into a sub-folder of its name.
        saved = staging if name == "default" else staging / name
        for file in saved.iterdir():
            if file.is_file():
                os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def delete_adapter(handle, name: str) -> None:
    """Remove adapter ``name``; without adapters left the model is unwrapped to the plain base model."""
    _require(handle, [name])
    if adapter_list(handle.model) == [name]:
        _replace_model(handle, handle.model.unload())
    else:
        handle.model.delete_adapter(name)


def merge_adapter(handle, name: str) -> None:
    """Merge adapter ``name`` into the base weights (only when asked: every other user of the base sees it).

    Refused while other adapters exist, since they were trained on the unmerged base.
    """
    _require(handle, [name])
    others = [other for other in adapter_list(handle.model) if other != name]
    if others:
        raise ValueError(f"cannot merge {name!r} while other adapters share the base: {', '.join(others)}")
    handle.model = handle.model.merge_and_unload(adapter_names=[name])


def save_merged(handle, name: str, folder: str | os.PathLike) -> Path:
    """Save base + adapter ``name`` merged as a full model folder, leaving ``handle`` untouched.

    Merges a copy of the model, so it briefly needs twice the weights' memory.
    """
    _require(handle, [name])
    merged = copy.deepcopy(handle.model).merge_and_unload(adapter_names=[name])   # the others are dropped
    folder = Path(folder)
    merged.save_pretrained(str(folder))
    handle.tokenizer.save_pretrained(str(folder))
    return folder


def adapter_digest(model, name: str) -> str:
    """A short hash of adapter ``name``'s weights: keys caches of outputs generated with it."""
    from peft import get_peft_model_state_dict

    from data.fingerprint import fingerprint_parts

    state = sorted(get_peft_model_state_dict(model, adapter_name=name).items())
    return fingerprint_parts(part for key, tensor in state
                             for part in (key.encode(), tensor.detach().float().cpu().numpy().tobytes()))


def row_adapter_names(handle, adapter_names: Sequence[str | None] | None, count: int) -> list[str] | None:
    """The per-row ``adapter_names`` to hand PEFT, or None when the model has no adapters.

    adapter_names=None: every row uses ``handle.adapter`` (None: the base model). Entries may be None or
    BASE for rows without adapter.
    """
    if adapter_names is None:
        adapter_names = [handle.adapter] * count
    elif len(adapter_names) != count:
        raise ValueError(f"{len(adapter_names)} adapter names for {count} prompts")
    names = [BASE if name is None else name for name in adapter_names]
    if not _is_peft(handle.model):
        if any(name != BASE for name in names):
            raise InputError(f"{handle.name}: no adapters loaded, but adapter "
                             f"{next(n for n in names if n != BASE)!r} was asked for")
        return None
    _require(handle, sorted(set(names) - {BASE}))
    return names


def _require(handle, names: Sequence[str]) -> None:
    known = adapter_list(handle.model)
    missing = [name for name in names if name not in known]
    if missing:
        raise InputError(f"{handle.name}: no adapter named {', '.join(map(repr, missing))} "
                         f"(loaded: {', '.join(known) or 'none'})")


def check_new_adapter_name(handle, name: str, replace: bool) -> None:
    """A valid name not in use, or in use and ``replace``: then the old adapter is dropped (HF or vLLM)."""
    if not name or "." in name or name == BASE:
        raise InputError(f"adapter name {name!r}: must be non-empty, without '.', and not {BASE!r}")
    if name in handle.adapters:
        if not replace:
            raise InputError(f"{handle.name}: adapter {name!r} exists already (delete it or pass replace=True)")
        if handle.vllm_engine is not None and name in handle.vllm_engine.adapters:
            handle.vllm_engine.remove_adapter(name)
        else:
            delete_adapter(handle, name)


def _replace_model(handle, model) -> None:
    """Wrapping or unwrapping keeps the base weights (and outputs cached for them) and the default adapter."""
    weights_id, default = handle.base_weights_id, handle.adapter
    handle.model = model
    handle.base_weights_id, handle.adapter = weights_id, default


def _base_model(model):
    return model.get_base_model() if _is_peft(model) else model


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)
