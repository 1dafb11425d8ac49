"""Run a module as ``__main__`` while noting every file or folder this process writes under a
folder: tests/test_accelerate.py launches training.train through it, one per process, to see
which process wrote what.

    WRITE_AUDIT_UNDER=runs/x WRITE_AUDIT_LOGS=logs python -m tests.write_audit training.train --config ...

Python's audit hooks see every ``open`` for writing, ``mkdir``, ``rename``, ``remove`` and
``rmtree`` made through Python, including the JSON and config files a ``save_pretrained``
writes before its weights (safetensors writes the weights from Rust, unseen: a process that
saves an adapter still shows, by its ``adapter_config.json``). Each process logs to
``WRITE_AUDIT_LOGS/rank-RANK.txt`` (``RANK``: the process's number, which torchrun and
``accelerate launch`` set; 0 without), one line per event: ``EVENT<tab>PATH`` relative to the folder.
"""

from __future__ import annotations

import os
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}


def audit_writes(under: str, log_path: str) -> None:
    root = os.path.abspath(under)
    log = open(log_path, "a", buffering=1)  # opened before the hook, so its own writes aren't events

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, flags = args[0], args[2]
            if not isinstance(flags, int) or not flags & WRITE_FLAGS:
                return
        elif event in PATH_EVENTS:
            path = args[0]
        else:
            return
        if isinstance(path, int):  # a descriptor: its path was seen when it was opened
            return
        path = os.path.abspath(os.fsdecode(path))
        if path == root or path.startswith(root + os.sep):
            log.write(f"{event}\t{os.path.relpath(path, root)}\n")

    sys.addaudithook(hook)


if __name__ == "__main__":
    logs = os.environ["WRITE_AUDIT_LOGS"]
    audit_writes(os.environ["WRITE_AUDIT_UNDER"], os.path.join(logs, f"rank-{os.environ.get('RANK', '0')}.txt"))
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
