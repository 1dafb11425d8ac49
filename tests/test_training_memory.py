"""Freed training memory goes back to the system (training.backends.map_large_allocations).

Each case runs in its own Python process, since malloc's settings last for the process: one
large block is freed (which makes glibc raise its mapping threshold), then 64 blocks of 4 MiB
are written and freed between smaller ones that stay, the pattern of a CPU step's activations.
"""

import ctypes.util
import subprocess
import sys

import pytest

from training.backends import map_large_allocations


FREE_BLOCKS = r"""
import ctypes, ctypes.util, resource, sys
from training.backends import map_large_allocations

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20


if sys.argv[1] == "mapped":
    assert map_large_allocations()
libc.free(libc.malloc(8 << 20))
blocks, kept = [], []
for _ in range(64):
    blocks.append(libc.malloc(4 << 20))
    libc.memset(blocks[-1], 1, 4 << 20)
    kept.append(libc.malloc(256 << 10))  # from the heap top: it pins the block below it
before = resident_mb()
for block in blocks:
    libc.free(block)
print(round(before - resident_mb()))
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version"),
    reason="the threshold is glibc's",
)


def released_mb(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FREE_BLOCKS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@glibc_only
def test_freed_blocks_stay_resident_with_glibc_defaults():
    assert released_mb("default") < 64  # the holes between the kept blocks are not returned


@glibc_only
def test_freed_blocks_go_back_to_the_system_when_mapped():
    assert released_mb("mapped") > 200  # most of the 256 MiB


@glibc_only
def test_the_setting_is_taken_on_glibc():
    assert map_large_allocations()
