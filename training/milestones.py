"""Long training runs that outlive a machine: milestones small enough to commit, and resuming
from whatever state a run left.

A CPU epoch takes many hours, over several sittings, and a sitting may end on a fresh machine
with only the git checkout. Checkpoints (``output_dir/checkpoint-N``: adapter, optimizer,
schedule, RNG) make a stop on the same machine cost at most ``save_steps`` steps. A
*milestone* is what a fresh machine can continue from: every ``milestone_steps`` steps the
newest checkpoint is copied to ``milestone_dir/checkpoint-N`` without its optimizer state
(~70 MB of Adam moments for the 0.5B recipe's LoRA): the adapter in bf16 (~18 MB), the
trainer state (step, log history), the learning-rate schedule and the training data's
fingerprint. Committed, it lets a new machine resume at step N: the same schedule and the same
order of packs; only Adam's moments start again from zero (their bias correction keeps the
first updates at the usual size).

``resume_point`` picks the newest state found, a local checkpoint before a milestone of the same
step (it is exact). Every checkpoint and milestone carries the fingerprint of the packed
training data; resuming on different data (other code, recipe or data files) is refused, since
the sampler's position would then point into other packs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint


FINGERPRINT = "data_fingerprint.txt"
SCHEDULER = "scheduler.pt"
MILESTONE_FILES = ("adapter_config.json", "trainer_state.json", SCHEDULER, FINGERPRINT)


def data_fingerprint(dataset) -> str:
    """sha256 over the rows' token ids, labels and lengths, in dataset order."""
    digest = hashlib.sha256()
    for row in dataset:
        digest.update(json.dumps([row["input_ids"], row.get("labels")]).encode())
    return digest.hexdigest()


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def newest_checkpoint(folder: Path | None) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


def resume_point(output_dir: Path, milestone_dir: Path | None) -> Path | None:
    """The newest of ``output_dir``'s last checkpoint and ``milestone_dir``'s last milestone
    (the checkpoint when they are at the same step); None when there is neither."""
    found = [c for c in (newest_checkpoint(output_dir), newest_checkpoint(milestone_dir)) if c is not None]
    return max(found, key=step_of) if found else None


def check_fingerprint(checkpoint: Path, fingerprint: str) -> None:
    recorded = checkpoint / FINGERPRINT
    if not recorded.is_file():
        return  # a checkpoint from before fingerprints were kept
    if recorded.read_text().strip() != fingerprint:
        raise SystemExit(
            f"{checkpoint} was trained on other data than this run would train on (its packed data's "
            f"fingerprint differs: the recipe, data files or data code changed). Resuming would continue "
            "the sampler in different packs; start a new output_dir, or restore what changed."
        )


def is_milestone(checkpoint: Path) -> bool:
    """A milestone has no optimizer state (Adam's moments restart)."""
    return not any(checkpoint.glob("optimizer.*"))


class Milestones(TrainerCallback):
    """Writes each checkpoint's fingerprint, and every ``every`` steps a milestone of it."""

    def __init__(self, output_dir: Path, milestone_dir: Path | None, every: int, fingerprint: str):
        self.output_dir, self.milestone_dir, self.every, self.fingerprint = output_dir, milestone_dir, every, fingerprint

    def on_save(self, args, state, control, **kwargs):
        checkpoint = self.output_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not state.is_world_process_zero or not checkpoint.is_dir():  # several processes: the main one writes
            return
        (checkpoint / FINGERPRINT).write_text(self.fingerprint + "\n")
        if self.milestone_dir is not None and self.every and state.global_step % self.every == 0:
            write_milestone(checkpoint, self.milestone_dir)


def write_milestone(checkpoint: Path, milestone_dir: Path) -> Path:
    """``checkpoint`` without its optimizer, adapter in bf16, as ``milestone_dir/checkpoint-N``;
    older milestones removed (git keeps them)."""
    import torch
    from safetensors.torch import load_file, save_file

    target = milestone_dir / checkpoint.name
    building = milestone_dir / f".{checkpoint.name}.partial"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    for name in MILESTONE_FILES:
        shutil.copy2(checkpoint / name, building / name)
    weights = load_file(checkpoint / "adapter_model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, building / "adapter_model.safetensors")
    for old in milestone_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        shutil.rmtree(old)
    building.rename(target)
    return target


class RestoreSchedule(TrainerCallback):
    """Resuming from a milestone: the Trainer restores the learning-rate schedule only together
    with an optimizer state, which a milestone doesn't carry; this restores it alone."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        import torch

        lr_scheduler.load_state_dict(torch.load(self.checkpoint / SCHEDULER, weights_only=True))
