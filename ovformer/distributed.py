"""Process groups under ``torchrun`` (gloo on CPU, NCCL on CUDA), shared by ``ovformer predict``
and training (``training/dist.py`` re-exports these).

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without them (a plain command) every
function here is the single-process identity and nothing is set up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, the world size, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment names a world of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """"auto" -> this rank's GPU when CUDA is available, else CPU; "cuda" -> this rank's GPU."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    return torch.device(spec)


def init_distributed(device_spec: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent), else single-process.

    Args:
        timeout_s: how long a collective (a barrier) may wait for the slowest rank; torch's
            default (30 min for gloo, 10 min for NCCL) is too short where one rank still runs
            a long video while the others wait to merge.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        kwargs: dict[str, Any] = {}
        if timeout_s is not None:
            kwargs["timeout"] = timedelta(seconds=timeout_s)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **kwargs)
    return DistInfo(rank, world, local, device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), by rank; ``[obj]`` single-process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
