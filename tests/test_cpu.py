"""Every choice made from CPU features, on every kind of CPU, whatever CPU runs the tests.

``TEXT2SQL_CPU_FLAGS`` makes the code act as on another CPU kind, so an AVX2-only machine
covers the AVX-512/AMX branches and the other way round. (bitsandbytes' own choice of kernel
is covered in tests/test_train.py.)

    python -m pytest tests/test_cpu.py -v
"""

from pathlib import Path

import pytest
import torch

from text2sql import cpu
from text2sql.engine import inference_dtype
from training.backends import choose_backend


KINDS = {
    # flags as /proc/cpuinfo lists them -> (kind, native bf16)
    "fpu sse2 avx avx2 fma": ("avx2", False),
    "avx2 avx512f avx512bw avx512_vnni": ("avx512", False),
    "avx2 avx512f avx512_bf16 avx512_vnni": ("avx512_bf16", True),
    "avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_int8 amx_bf16": ("amx", True),
}


@pytest.fixture
def cpu_kind(monkeypatch):
    def act_as(flags: str):
        monkeypatch.setenv("TEXT2SQL_CPU_FLAGS", ",".join(flags.split()))
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    return act_as


@pytest.mark.parametrize("flags", KINDS)
def test_each_kind_takes_its_branch(cpu_kind, flags):
    kind, native_bf16 = KINDS[flags]
    cpu_kind(flags)
    assert cpu.kind() == kind
    assert cpu.has_fast_bf16() is native_bf16
    # Inference weights: bf16 only where it is native (elsewhere PyTorch emulates it, ~6x slower).
    assert inference_dtype() == (torch.bfloat16 if native_bf16 else torch.float32)
    # CPU training: bf16 autocast likewise, for LoRA and QLoRA.
    assert choose_backend("auto").bf16 is native_bf16
    assert choose_backend("4bit").bf16 is native_bf16


@pytest.mark.parametrize("flags", KINDS)
def test_the_dtype_setting_overrides_the_cpu(cpu_kind, monkeypatch, flags):
    cpu_kind(flags)
    for dtype in ("float32", "bfloat16"):
        monkeypatch.setenv("TEXT2SQL_DTYPE", dtype)
        assert inference_dtype() == getattr(torch, dtype)


def test_the_record_names_the_kind_and_says_when_it_was_forced(cpu_kind):
    cpu_kind("avx2 avx512f avx512_bf16")
    record = cpu.describe()
    assert record["kind"] == "avx512_bf16"
    assert record["flags"] == ["avx2", "avx512f", "avx512_bf16"]
    assert record["flags_forced_by"] == "TEXT2SQL_CPU_FLAGS"
    assert record["cores"] >= 1
    assert "avx512_bf16" in cpu.summary()


def test_without_the_setting_the_flags_are_this_machines(monkeypatch):
    monkeypatch.delenv("TEXT2SQL_CPU_FLAGS", raising=False)
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        assert cpu.cpu_flags() == frozenset() and cpu.kind() == "other"
        return
    listed = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split()
    assert cpu.cpu_flags() == frozenset(listed)
    assert cpu.has_fast_bf16() == ("avx512_bf16" in listed or "amx_bf16" in listed)
    assert "flags_forced_by" not in cpu.describe()
