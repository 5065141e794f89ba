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
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

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


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN
    emulates it and bf16 runs several times slower than float32 (e.g. an AVX2-only CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def fastest_dtype(device: str | torch.device) -> str:
    """The fastest dtype whose masks agree with float32's on >= 99% of pixels: "fp16" autocast
    on CUDA (what the official evaluation runs), "bf16" autocast on a CPU with bf16 units
    (99.99% agreement on the parity checkpoint, tests/test_bench.py), else "fp32"."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "fp16"
    return "bf16" if kind == "cpu" and cpu_has_bf16() else "fp32"
