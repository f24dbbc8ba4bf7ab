"""Data-parallel training of one unit on many processes (PyTorch DDP under ``torchrun``).

``torchrun --nproc-per-node N -m i2m2bench run --gin ...`` starts N copies of the run; each reads
its rank from torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) and joins one process group: NCCL on CUDA (one GPU per process,
``cuda:<LOCAL_RANK>``), Gloo on CPU. Multi-node runs use torchrun's own rendezvous
(``docs/scaling.md``). Every process builds the same task and plan; rank 0 decides what each unit needs
and broadcasts it, every rank trains (each index batch sharded,
:func:`i2m2bench.types.shard_bounds`), and only
rank 0 evaluates the protocols and writes checkpoints, predictions and rows
(``i2m2bench.harness.runner``). Without torchrun's environment (or with ``WORLD_SIZE=1``) all of
this reduces to the single-process run.
"""
from __future__ import annotations

import datetime as _dt
import os

import torch
import torch.distributed as dist

# A rank waits this long at a collective (e.g. while rank 0 evaluates every protocol of a unit)
# before torch.distributed gives up; evaluation of a large suite's protocols can take minutes.
TIMEOUT = _dt.timedelta(hours=2)


def env_world_size() -> int:
    """The world size torchrun set (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number") from exc


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (NCCL for CUDA, Gloo for CPU) and
    return this process's device: ``cuda:<LOCAL_RANK>`` when ``device`` is CUDA, else ``device``.
    A no-op (``device`` returned) for a single process or a group already joined."""
    n = env_world_size()
    if n <= 1:
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} "
                               "CUDA device(s); start at most that many processes per node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={n} but {', '.join(missing)} is not set: start the run "
                               "with torchrun (torchrun --nproc-per-node N -m i2m2bench run ...)")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (a picklable Python object)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (a new tensor; ``t`` itself when alone)."""
    if not active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` for data-parallel training: BatchNorm layers become SyncBatchNorm on CUDA (the
    statistics of the global batch; SyncBatchNorm has no CPU kernel, so on CPU each rank normalises
    with its shard's statistics) and the module is wrapped in DistributedDataParallel, whose
    backward averages the gradients over ranks. ``find_unused_parameters``: a fusion may leave
    a parameter out of a step's graph (a plugin, an expert dropped by a mask); DDP then still
    reduces. The model itself when alone."""
    if not active():
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=None,
                                                     find_unused_parameters=True)


__all__ = ["active", "all_sum", "barrier", "broadcast", "env_world_size", "init_from_env",
           "is_main", "rank", "shutdown", "world_size", "wrap"]
