"""One process or many, for every training script: ``python -m``, ``torchrun --nproc_per_node N`` and
``accelerate launch`` run the same code.

The process group comes from accelerate's ``PartialState`` (the state HF Trainer and ``Accelerator`` share,
so the three never disagree): rank, world size and device from the launcher's environment, nccl on GPU and
gloo on CPU. The rules every script follows:

* rank 0 alone logs at INFO, writes config.json, checkpoints and results (``is_main_process``); the other
  ranks log warnings only (``setup_logging``);
* a model is wrapped in DistributedDataParallel only with more than one process (``wrap``), and what is saved
  is always the module inside, so a checkpoint of N processes has the single-process format;
* per-user loops do not train one model together: each process takes its users (``independent_workers``,
  the runtime's ``--num_shards/--shard_id``) and trains alone.

    from runtime.distributed import processes, setup_logging
    dist = processes(args.device)            # joins the group under torchrun / accelerate launch
    setup_logging(run_dir)                   # INFO and run.log on rank 0
    model = dist.wrap(model)                 # DDP when world_size > 1
    if dist.is_main_process: save(...)
    dist.barrier()
"""
from __future__ import annotations

import datetime
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("lampkit.runtime")

T = TypeVar("T")
GROUP_TIMEOUT = datetime.timedelta(hours=2)
# What torchrun (and accelerate launch, which runs torchrun) puts into each process's environment.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                      "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT",
                      "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
                      "TORCHELASTIC_USE_AGENT_STORE")


# Set by independent_workers: the rank the launcher gave this process before its variables were removed.
_worker_rank: int | None = None


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 alone); needs no process group."""
    if _worker_rank is not None:
        return _worker_rank
    return int(os.environ.get("RANK", "0") or 0)


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs and writes."""
    return launched_rank() == 0


@dataclass(frozen=True)
class Processes:
    """This process among the launched ones, joined into one process group when there are several."""

    rank: int
    world_size: int
    local_rank: int
    device: Any                 # torch.device of this process (cuda:<local rank> on GPU, else cpu)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (nothing alone)."""
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model, **ddp_options):
        """``model`` in DistributedDataParallel with more than one process, else ``model`` itself."""
        if not self.is_distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, **ddp_options)

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every process (any picklable object)."""
        if not self.is_distributed:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]


@functools.lru_cache(maxsize=None)
def processes(device: str | None = None) -> Processes:
    """Join the launcher's process group (once per process) and return this process's place in it.

    ``device``: None/"auto"/"cuda" picks cuda:<local rank> when CUDA is there, else the CPU; "cpu" forces
    the CPU (gloo), where accelerate must be told, or each process would run alone; "cuda:N" is taken as is.
    """
    import torch
    from accelerate import PartialState

    wants_cpu = (device or "").startswith("cpu") or not torch.cuda.is_available()
    joining = not PartialState._shared_state          # the first call of this process (Trainer's come later)
    # Rank 0 alone generates validation outputs between epochs (lamp_rag.training) while the others wait in
    # a collective: a 7B model's dev set takes longer than torch's 10-30 minute default timeout.
    state = PartialState(cpu=wants_cpu, timeout=GROUP_TIMEOUT)
    chosen = torch.device(device) if device and ":" in device else state.device
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if joining and state.num_processes > 1 and state.is_main_process:
        log.info("%d processes (%s backend), this one on %s", state.num_processes, state.backend, chosen)
    return Processes(state.process_index, state.num_processes, state.local_process_index, chosen)


def setup_logging(output_dir: str | os.PathLike | None = None) -> None:
    """INFO to stderr and ``<output_dir>/run.log`` on rank 0; warnings only, to stderr, on the other ranks."""
    from data.cli import setup_logging as log_to_folder

    if is_main_process():
        log_to_folder(output_dir)
    else:
        logging.basicConfig(level=logging.WARNING, force=True,
                            format=f"%(asctime)s rank {launched_rank()} %(levelname)s %(name)s: %(message)s")


def independent_workers(args) -> None:
    """Per-user loops under torchrun: each process runs its own shard of the users ALONE (no process group).

    The shard is fixed into ``args`` (``--num_shards/--shard_id``, defaulting to RANK/WORLD_SIZE) and the
    launcher's variables are removed, so HF Trainer inside a user's training sees one process instead of
    joining a group whose members train other users. On a multi-GPU machine the process keeps the GPU of
    its local rank (CUDA_VISIBLE_DEVICES), as Trainer would otherwise spread one user over every GPU. Rank 0
    stays the one that logs at INFO and writes the run's config.json into the folder the ranks share.
    """
    global _worker_rank
    from runtime.users import shard_from_args

    shard = shard_from_args(args)
    args.num_shards, args.shard_id = shard.count, shard.index
    local_rank = os.environ.get("LOCAL_RANK")
    if "RANK" in os.environ:
        _worker_rank = launched_rank()
    for name in LAUNCHER_VARIABLES:
        os.environ.pop(name, None)
    if local_rank is not None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else None
        if gpus is None or int(local_rank) < len(gpus):
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus[int(local_rank)] if gpus else local_rank
    if shard.count > 1:
        log.info("per-user loop: %s, running alone", shard)


def save_state(path: str | os.PathLike, state: dict) -> Path:
    """A resume state written atomically by torch.save (the caller writes on rank 0 only)."""
    import torch

    from data.io import atomic_open

    with atomic_open(Path(path), "wb") as handle:
        torch.save(state, handle)
    return Path(path)


def load_state(path: str | os.PathLike, key: str) -> dict | None:
    """The resume state at ``path`` when it was saved under the settings ``key`` (its "key" entry), else None."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("key") != key:
        log.info("%s was made with other settings or data; starting over", path)
        return None
    log.info("resuming from %s at step %d", path, state["step"])
    return state
