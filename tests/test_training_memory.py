"""Freed training memory goes back to the system (training.backends.release_freed_memory).

Each case runs in its own Python process, so each starts with a fresh heap: one large block is
freed (which makes glibc raise its mapping threshold), then 64 blocks of 4 MiB are written and
freed between smaller ones that stay, the pattern of a CPU step's activations.
"""

import ctypes.util
import subprocess
import sys

import pytest


FREE_BLOCKS = r"""
import ctypes, ctypes.util, resource, sys
from training.backends import release_freed_memory

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20


libc.free(libc.malloc(8 << 20))
blocks, kept = [], []
for _ in range(64):
    blocks.append(libc.malloc(4 << 20))
    libc.memset(blocks[-1], 1, 4 << 20)
    kept.append(libc.malloc(256 << 10))  # from the heap top: it pins the block below it
before = resident_mb()
for block in blocks:
    libc.free(block)
if sys.argv[1] == "released":
    assert release_freed_memory()
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
def test_freed_blocks_go_back_to_the_system_when_released():
    assert released_mb("released") > 200  # most of the 256 MiB
