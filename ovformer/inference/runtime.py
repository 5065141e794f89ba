"""Process settings that make CPU inference faster without changing any result, and the
fastest dtype that keeps the masks (:func:`fastest_dtype`).

glibc's malloc serves every block over 32 MiB with a fresh ``mmap`` and unmaps it on free. The
model allocates dozens of such tensors per clip (an R50 clip of 5 frames at 360x640 makes
~500,000-750,000 page faults, 2-3 GB of pages zeroed by the kernel), which cost 10-20% of the
CPU time. Serving them from the heap and keeping freed memory for the next clip removes that;
the price is that the process holds on to more of its peak (R50, 5 frames: resident memory
between clips 1.6 GB instead of 1.2, peak 2.0 GB instead of 1.85).

The setting is process-wide and takes effect for allocations made from the main thread; glibc's
per-thread arenas (a model run from a worker thread) keep their own behaviour.

Which dtype a predictor runs in is chosen here too (:func:`resolve_runtime`) and described in one
line for the CLI and the app (:func:`describe_runtime`), warning where a reduced dtype would be
emulated.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

from ..distributed import pick_device

_M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory(trim_threshold: int = 256 << 20) -> bool:
    """Make glibc malloc serve large blocks from its heap and keep up to ``trim_threshold``
    bytes of freed memory at its top (256 MiB gets ~all of the gain: the rest of the freed
    blocks sit below live ones and are reused anyway). Idempotent; a no-op (returns False) where
    libc is not glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    return _done


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# CPU flags of the units that multiply each reduced dtype in hardware
_UNITS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def native_dtype(device: str | torch.device, dtype: str) -> bool:
    """Whether ``device`` computes in ``dtype`` in hardware: always for float32 and on CUDA; on
    a CPU, bf16 needs AVX512-BF16/AMX and fp16 AVX512-FP16/AMX-FP16. Elsewhere PyTorch falls
    back to reference kernels (an AVX2-only CPU: R50 at 360p in bf16, 9.4 s a frame against
    1.05 in float32, most of it in a reference convolution)."""
    if dtype == "fp32" or torch.device(device).type != "cpu":
        return True
    return bool(_cpu_flags() & set(_UNITS.get(dtype, ())))


def fastest_dtype(device: str | torch.device) -> str:
    """The fastest dtype whose masks agree with float32's on >= 99% of pixels: "fp16" autocast
    on CUDA (what the official evaluation runs), "bf16" autocast on a CPU with bf16 units
    (99.99% agreement on the parity checkpoint, tests/test_bench.py), else "fp32"."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "fp16"
    return "bf16" if kind == "cpu" and native_dtype(kind, "bf16") else "fp32"


def resolve_runtime(device: str, dtype: str, local_rank: int = 0) -> tuple[torch.device, str]:
    """``--device``/``--dtype`` as given ("auto" allowed for both) -> the device and dtype a
    predictor runs with: "auto" device = this rank's GPU when CUDA is available, else the CPU;
    "auto" dtype = :func:`fastest_dtype` there."""
    dev = pick_device(device, local_rank)
    return dev, fastest_dtype(dev) if dtype == "auto" else dtype


def describe_runtime(device: str | torch.device, dtype: str) -> str:
    """One line for the CLI's first line and the app's banner: where the model runs, in which
    dtype, and what that means for the output (exact, >= 99% mask agreement, or emulated)."""
    if dtype == "fp32":
        return f"{device}, fp32 (exact)"
    if not native_dtype(device, dtype):
        units = " or ".join(u.upper().replace("_", "-") for u in _UNITS.get(dtype, ()))
        return (f"{device}, {dtype} (WARNING: this CPU has no {units}: {dtype} is emulated and "
                f"runs several times slower than fp32; --dtype auto or fp32)")
    return (f"{device}, {dtype} (masks agree with fp32 on >= 99% of pixels; --dtype fp32 for "
            "exact output)")
