"""Data parallelism under `torchrun` (gloo on CPU, NCCL on GPU) with the same command.

`torchrun --nproc_per_node N -m training train ...` sets RANK/WORLD_SIZE/LOCAL_RANK; a
plain `python -m training train ...` runs single-process with nothing to set up.
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

# one implementation for training and `ovformer predict` (ovformer never imports training)
from ovformer.distributed import (DistInfo, barrier, cleanup, init_distributed,  # noqa: F401
                                  is_distributed, pick_device)


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar log values over ranks (every rank must call it with the same keys)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (e.g. a stop request seen by rank 0)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of every parameter and buffer, in state-dict order."""
    h = hashlib.sha256()
    for name, v in model.state_dict().items():
        h.update(name.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_fingerprints(model: torch.nn.Module) -> list[str]:
    """Every rank's `weights_fingerprint`, by rank: data parallelism keeps them equal."""
    fp = weights_fingerprint(model)
    if not is_distributed():
        return [fp]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, fp)
    return out
