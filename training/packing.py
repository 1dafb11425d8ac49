"""Shared-prefix packing: one database's schema prompt once, followed by many questions.

Spider has ~50 questions per database and our prompt puts the ~600-token system + schema
text first and the question last, so the examples of one database share a long token
prefix. A *pack* is that prefix followed by several segments, each the rest of one
example (question, assistant header, SQL, end of turn). In the pack

* every segment attends to the prefix and, causally, to itself, never to other segments
  (a 4D attention mask);
* position ids restart after the prefix for every segment, so each segment sees exactly
  the positions it has when trained alone;
* labels sit only on the SQL and end-of-turn tokens, as in trl's completion-only loss;
* the LM head runs only on positions whose next token is a label
  (``logits_to_keep`` as a boolean mask): Qwen's vocabulary has 152k entries.

The loss (label-token sum / label-token count) and its gradients are therefore those of
the same examples batched the ordinary way (``tests/test_packing.py`` checks it), at a
fraction of the tokens. Examples are tokenized exactly as trl's ``SFTTrainer`` tokenizes
conversational prompt/completion records (also checked), and the shared prefix is the
longest common run of *token ids*, so no assumption about where the tokenizer splits the
text is needed.

    trainer = PrefixPackedSFTTrainer(model=..., args=SFTConfig(...), train_dataset=Dataset.from_list(packs), ...)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from trl import SFTTrainer
from trl.data_utils import common_prefix_length


IGNORE_INDEX = -100


def tokenize_example(tokenizer, prompt: list[dict], completion: list[dict]) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (-100 outside the completion), as trl 1.16's SFTTrainer
    builds them for a conversational prompt/completion record with completion-only loss."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    start = common_prefix_length(prompt_ids["input_ids"], full_ids)
    return {"input_ids": full_ids, "labels": [IGNORE_INDEX] * start + full_ids[start:]}


def first_label_index(labels: list[int]) -> int:
    return next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)


def shared_prefix_length(examples: list[dict]) -> int:
    """Tokens the examples can share: their common token prefix, cut so that each example
    keeps at least its last prompt token (whose output predicts the first label) in its
    own segment. Identical examples (oversampled copies) would otherwise share everything."""
    first = examples[0]["input_ids"]
    length = min(first_label_index(e["labels"]) - 1 for e in examples)
    for other in examples[1:]:
        length = min(length, common_prefix_length(first, other["input_ids"]))
    return max(0, length)


def _pack(examples: list[dict]) -> dict:
    prefix = shared_prefix_length(examples)
    input_ids = list(examples[0]["input_ids"][:prefix])
    labels = [IGNORE_INDEX] * prefix
    segment_lengths = []
    for example in examples:
        input_ids += example["input_ids"][prefix:]
        labels += example["labels"][prefix:]
        segment_lengths.append(len(example["input_ids"]) - prefix)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "prefix_length": prefix,
        "segment_lengths": segment_lengths,
        "num_examples": len(examples),
        "unpacked_tokens": sum(len(e["input_ids"]) for e in examples),
    }


def pack_examples(examples: Iterable[dict], max_tokens: int) -> list[dict]:
    """Packs of examples with the same ``group`` (database), in input order, each at most
    ``max_tokens`` long. An example longer than that alone becomes a pack of one: nothing
    is ever truncated."""
    by_group: dict[str, list[dict]] = {}
    for example in examples:
        by_group.setdefault(example["group"], []).append(example)
    packs = []
    for members in by_group.values():
        current: list[dict] = []
        for example in members:
            candidate = current + [example]
            if current and len(_pack(candidate)["input_ids"]) > max_tokens:
                packs.append(_pack(current))
                candidate = [example]
            current = candidate
        packs.append(_pack(current))
    return packs


@dataclasses.dataclass
class PackStats:
    packs: int
    examples: int
    packed_tokens: int
    unpacked_tokens: int
    longest_pack: int

    @classmethod
    def of(cls, packs: list[dict]) -> PackStats:
        return cls(
            packs=len(packs),
            examples=sum(p["num_examples"] for p in packs),
            packed_tokens=sum(len(p["input_ids"]) for p in packs),
            unpacked_tokens=sum(p["unpacked_tokens"] for p in packs),
            longest_pack=max((len(p["input_ids"]) for p in packs), default=0),
        )

    def __str__(self) -> str:
        ratio = self.unpacked_tokens / max(1, self.packed_tokens)
        return (
            f"{self.examples} examples in {self.packs} packs ({self.examples / max(1, self.packs):.1f} per pack), "
            f"{self.packed_tokens} tokens instead of {self.unpacked_tokens} ({ratio:.1f}x fewer), "
            f"longest pack {self.longest_pack}"
        )


# ---------------------------------------------------------------------------
# Collating packs into model inputs


def pack_layout(prefix_length: int, segment_lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: its position id and its segment number (0 for the shared prefix)."""
    positions = [torch.arange(prefix_length)]
    segments = [torch.zeros(prefix_length, dtype=torch.long)]
    for number, length in enumerate(segment_lengths, start=1):
        positions.append(torch.arange(prefix_length, prefix_length + length))
        segments.append(torch.full((length,), number, dtype=torch.long))
    return torch.cat(positions), torch.cat(segments)


def pack_attention_mask(segments: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean (length, length) mask, True where query row may attend to key column:
    causal, and only to the prefix (segment 0) or its own segment. Padding after the
    pack (segment -1) attends only to itself, so no softmax row is empty (NaN)."""
    n = segments.numel()
    mask = torch.eye(length, dtype=torch.bool)
    query, key = segments[:, None], segments[None, :]
    mask[:n, :n] = torch.ones(n, n, dtype=torch.bool).tril() & ((key == 0) | (key == query))
    return mask


@dataclasses.dataclass
class PrefixPackCollator:
    """Right-pads packs into a batch with a 4D boolean attention mask and position ids."""

    pad_token_id: int

    def __call__(self, packs: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(p["input_ids"]) for p in packs)
        input_ids = torch.full((len(packs), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(packs), length), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(packs), length), dtype=torch.long)
        masks = []
        for row, pack in enumerate(packs):
            n = len(pack["input_ids"])
            input_ids[row, :n] = torch.as_tensor(pack["input_ids"])
            labels[row, :n] = torch.as_tensor(pack["labels"])
            positions, segments = pack_layout(pack["prefix_length"], pack["segment_lengths"])
            position_ids[row, :n] = positions
            masks.append(pack_attention_mask(segments, length))
        return {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "attention_mask": torch.stack(masks)[:, None],
            "num_tokens": torch.tensor(sum(len(p["input_ids"]) for p in packs)),
        }


# ---------------------------------------------------------------------------
# Loss on label positions only


def packed_loss(model, batch: dict[str, torch.Tensor], num_items_in_batch=None, unwrapped=None) -> tuple[torch.Tensor, dict]:
    """Summed next-token cross-entropy over label tokens / ``num_items_in_batch`` (their
    count when None): trl's SFT loss. The LM head sees only positions that predict a label.
    ``unwrapped``: the model inside ``model`` when that is a wrapper hiding its config (DDP)."""
    inner = unwrapped if unwrapped is not None else model
    labels = batch["labels"]
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    keep = targets != IGNORE_INDEX
    attention_mask = batch["attention_mask"]
    if inner.config._attn_implementation == "eager":  # eager adds the mask to the scores
        attention_mask = attention_mask.new_zeros(attention_mask.shape, dtype=inner.dtype).masked_fill(
            ~attention_mask, torch.finfo(inner.dtype).min
        )
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=attention_mask,
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the softmax over 150k entries needs fp32
    wanted = targets[keep]
    count = num_items_in_batch if num_items_in_batch is not None else wanted.numel()
    loss = F.cross_entropy(logits, wanted, reduction="sum") / torch.as_tensor(count).clamp(min=1)
    with torch.no_grad():
        correct = (logits.argmax(-1) == wanted).sum()
    return loss, {"label_tokens": wanted.numel(), "correct": correct.item()}


def tokens_logged(log_history: list[dict]) -> int:
    """The last ``num_tokens`` a run logged (0 for a new run): where a resumed run's count goes
    on from, since trl's counter starts at zero in every process."""
    return next((int(entry["num_tokens"]) for entry in reversed(log_history) if "num_tokens" in entry), 0)


class PrefixPackedSFTTrainer(SFTTrainer):
    """trl's SFTTrainer on a dataset of packs (``pack_examples`` output).

    Everything else (optimizer, schedule, gradient accumulation and checkpointing,
    checkpoints, resume, logging, eval) is the stock trainer; only batching and the loss
    differ. The dataset is already tokenized, so trl's preparation is skipped.
    """

    def __init__(self, model, args, processing_class, **kwargs):
        # Our columns (prefix/segment lengths) are not model inputs, and trl must not
        # re-tokenize, truncate or pack the rows.
        args.remove_unused_columns = False
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        if args.packing or args.padding_free:
            raise ValueError("Shared-prefix packing replaces trl's packing/padding_free: turn those off.")
        pad_token_id = processing_class.pad_token_id
        if pad_token_id is None:
            pad_token_id = processing_class.eos_token_id
        kwargs.setdefault("data_collator", PrefixPackCollator(pad_token_id))
        super().__init__(model=model, args=args, processing_class=processing_class, **kwargs)
        implementation = self.model.config._attn_implementation
        if implementation not in ("sdpa", "eager"):
            raise ValueError(f"Shared-prefix packing needs a 4D attention mask: use sdpa or eager, not {implementation}.")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        loss, stats = packed_loss(model, inputs, num_items_in_batch, self.accelerator.unwrap_model(model))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # Several processes: num_items_in_batch counts every process's label tokens, and DDP
            # averages the gradients, so each process's sum is scaled back up (as the Trainer's
            # own compute_loss does): the loss and gradients of one process with the global batch.
            loss = loss * self.accelerator.num_processes
        # The metrics count every process's tokens, as one process with the global batch would.
        label_tokens, correct, tokens = self.accelerator.gather(
            torch.tensor([[stats["label_tokens"], stats["correct"], int(inputs["num_tokens"])]], device=loss.device)
        ).sum(0).tolist()
        if label_tokens:
            self._metrics[mode]["mean_token_accuracy"].append(correct / label_tokens)
        if mode == "train":
            if self._total_train_tokens == 0:  # this process's first step: a resumed run goes on counting
                self._total_train_tokens = tokens_logged(self.state.log_history)
            self._total_train_tokens += tokens
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, None) if return_outputs else loss
