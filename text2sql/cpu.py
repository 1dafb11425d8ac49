"""What kind of CPU this is, for the choices that depend on it and for the record.

The machines this project runs on differ: some are AVX2-only, some have AVX-512 with BF16 and
VNNI, some AMX. Every choice the code makes from CPU features goes through this module:

* ``has_fast_bf16()``: bf16 matmuls are native (AVX512-BF16 or AMX). Inference then loads
  bf16 weights (``text2sql.engine.inference_dtype``) and CPU training turns on bf16 autocast
  (``training.backends.choose_backend``); elsewhere PyTorch emulates bf16, ~6x slower than fp32.
* ``describe()``: the CPU kind written into every result (evaluation metrics, benchmark
  outputs), since a figure means little without the machine it came from.

``TEXT2SQL_CPU_FLAGS`` (comma-separated, e.g. ``avx2`` or ``avx2,avx512f,avx512_bf16``) replaces
the flags read from ``/proc/cpuinfo``: the tests use it to take the branch another CPU kind
would take, and a user can use it to force one.

    python -m text2sql.cpu        # this machine's kind, as results record it
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from text2sql.settings import get_settings


KIND_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
"""The flags that decide how fast our kernels run, in the order they are reported."""


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: ``TEXT2SQL_CPU_FLAGS`` when set, else ``/proc/cpuinfo``'s
    (empty where there is none, e.g. macOS: every choice then takes its portable branch)."""
    forced = get_settings().cpu_flags
    if forced:
        return frozenset(flag.strip() for flag in forced.split(",") if flag.strip())
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (~3x faster prefill than fp32)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def kind() -> str:
    """The CPU kind in one word: ``amx``, ``avx512_bf16``, ``avx512``, ``avx2`` or ``other``."""
    flags = cpu_flags()
    if "amx_bf16" in flags or "amx_tile" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def model_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def describe() -> dict:
    """The record every committed figure carries: kind, the flags that matter, model, cores."""
    forced = bool(get_settings().cpu_flags)
    return {
        "kind": kind(),
        "flags": [flag for flag in KIND_FLAGS if flag in cpu_flags()],
        "model": model_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **({"flags_forced_by": "TEXT2SQL_CPU_FLAGS"} if forced else {}),
    }


def summary() -> str:
    """``describe()`` in one line, for logs and benchmark printouts."""
    cpu = describe()
    flags = " ".join(cpu["flags"]) or "none of " + "/".join(KIND_FLAGS)
    return f"CPU {cpu['kind']} ({cpu['model']}, {cpu['cores']} cores; {flags})"


if __name__ == "__main__":
    print(json.dumps(describe(), indent=1))
