"""Running an entry script as the user would: alone (``python -m``) or under ``torchrun`` on CPU (gloo), and
describing what a run saved, so a test can compare the files of N processes with those of one."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Per-process RNG states of HF Trainer's resume point: rng_state.pth alone, rng_state_<rank>.pth under N processes.
PER_PROCESS_FILES = ("rng_state",)


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_module(module: str, args, processes: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m module args`` (processes=1) or ``torchrun --nproc_per_node processes -m module args``."""
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                                          "--master_port", str(free_port())]
    command = [sys.executable, *launcher, "-m", module, *map(str, args)]
    result = subprocess.run(command, cwd=REPO, env=_environment(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def saved_format(folder: Path) -> dict:
    """What a saved model/adapter folder looks like: its file names (per-process RNG states as one name), the
    name, dtype and shape of every tensor of its safetensors files, and its config files."""
    from safetensors import safe_open

    names, tensors, configs = set(), {}, {}
    for path in sorted(Path(folder).iterdir()):
        stem = next((prefix for prefix in PER_PROCESS_FILES if path.name.startswith(prefix)), None)
        names.add(f"{stem}*" if stem else path.name)
        if path.suffix == ".safetensors":
            with safe_open(path, "pt") as weights:
                tensors[path.name] = {key: (str(weights.get_slice(key).get_dtype()), weights.get_slice(key).get_shape())
                                      for key in weights.keys()}
        elif path.name in ("config.json", "adapter_config.json", "generation_config.json"):
            config = json.loads(path.read_text())
            if isinstance(config.get("target_modules"), list):   # peft writes a set: order varies per process
                config["target_modules"] = sorted(config["target_modules"])
            configs[path.name] = config
    return {"files": sorted(names), "tensors": tensors, "configs": configs}
