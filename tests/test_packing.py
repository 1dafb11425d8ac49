"""Shared-prefix packing: layout, and the same loss and gradients as ordinary batches.

    python -m pytest tests/test_packing.py -v
"""

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from tests.conftest import SPIDER
from text2sql.prompt import build_completion, build_messages
from text2sql.spider import Spider
from training.packing import (
    IGNORE_INDEX,
    PrefixPackCollator,
    pack_attention_mask,
    pack_examples,
    pack_layout,
    packed_loss,
    shared_prefix_length,
    tokenize_example,
)


pytestmark = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture(scope="module")
def spider_examples(tokenizer):
    """Seven real Spider questions about one database, tokenized as trl tokenizes them."""
    spider = Spider(SPIDER)
    examples = [e for e in spider.examples("train") if e.db_id == "department_management"][:7]
    schema = spider.schema("department_management")
    return [
        {**tokenize_example(tokenizer, build_messages(schema, e.question), build_completion(e.query)), "group": e.db_id}
        for e in examples
    ]


def test_layout_restarts_positions_and_mask_isolates_segments():
    positions, segments = pack_layout(3, [2, 2])
    assert positions.tolist() == [0, 1, 2, 3, 4, 3, 4]
    assert segments.tolist() == [0, 0, 0, 1, 1, 2, 2]
    mask = pack_attention_mask(segments, 8).int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 1, 0, 0],  # second segment: the prefix and itself, not the first segment
        [1, 1, 1, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding attends to itself only (no empty softmax row)
    ]


def test_packs_share_the_schema_prefix_and_keep_every_token(spider_examples, tokenizer):
    [pack] = pack_examples(spider_examples, max_tokens=100_000)
    prefix = pack["prefix_length"]
    assert tokenizer.decode(pack["input_ids"][:prefix]).endswith("Question:")
    assert pack["num_examples"] == 7 and len(pack["segment_lengths"]) == 7
    start = prefix
    for example, length in zip(spider_examples, pack["segment_lengths"]):
        # prefix + segment is exactly the example's own token sequence and labels
        assert pack["input_ids"][:prefix] + pack["input_ids"][start : start + length] == example["input_ids"]
        assert [IGNORE_INDEX] * prefix + pack["labels"][start : start + length] == example["labels"]
        start += length
    assert len(pack["input_ids"]) < 0.5 * pack["unpacked_tokens"]


def test_budget_splits_packs_and_never_truncates(spider_examples):
    one = len(spider_examples[0]["input_ids"])
    packs = pack_examples(spider_examples, max_tokens=one + 60)
    assert len(packs) > 1
    assert sum(p["num_examples"] for p in packs) == 7
    assert all(len(p["input_ids"]) <= one + 60 or p["num_examples"] == 1 for p in packs)
    alone = pack_examples(spider_examples[:2], max_tokens=10)
    assert [p["num_examples"] for p in alone] == [1, 1]
    assert [len(p["input_ids"]) for p in alone] == [len(e["input_ids"]) for e in spider_examples[:2]]


def test_oversampled_copies_keep_their_last_prompt_token(spider_examples):
    copies = [spider_examples[0]] * 3
    prefix = shared_prefix_length(copies)
    first_label = next(i for i, label in enumerate(spider_examples[0]["labels"]) if label != IGNORE_INDEX)
    assert prefix == first_label - 1
    [pack] = pack_examples(copies, max_tokens=100_000)
    assert pack["segment_lengths"] == [len(spider_examples[0]["input_ids"]) - prefix] * 3


def _tiny(architecture: str, vocab_size: int):
    torch.manual_seed(0)
    shape = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    if architecture == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**shape)).double()
    return LlamaForCausalLM(LlamaConfig(**shape)).double()


def assert_same_gradients(actual: dict, expected: dict) -> None:
    """Equal up to rounding (summation order differs: the shared prefix's gradient is
    accumulated once instead of once per example; transformers computes RoPE in fp32),
    relative to each tensor's scale. A wrong mask or position is off by ~1e-1 (see
    ``test_an_ordinary_causal_mask_would_not_match``)."""
    assert actual.keys() == expected.keys() and len(expected) > 0
    for name, grad in expected.items():
        error = (actual[name] - grad).abs().max().item()
        assert error <= 1e-6 * grad.abs().max().item() + 1e-14, f"{name}: off by {error}"


def ordinary_loss(model, batch):
    """Mean next-token cross-entropy over label tokens of a padded batch, in the model's
    dtype (transformers' own loss casts to fp32, too coarse for these comparisons)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


def _loss_and_grads(model, compute):
    model.zero_grad()
    loss = compute()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
@pytest.mark.parametrize("max_tokens", [100_000, 600])
def test_packed_loss_and_gradients_equal_ordinary_batches(spider_examples, tokenizer, architecture, max_tokens):
    """The packed loss (label-token mean) and every parameter's gradient equal those of the
    same examples padded into one ordinary batch, as trl's collator builds it."""
    model = _tiny(architecture, len(tokenizer))
    plain = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(
        [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in spider_examples]
    )
    packs = pack_examples(spider_examples, max_tokens=max_tokens)
    packed = PrefixPackCollator(tokenizer.pad_token_id)(packs)
    plain_loss, plain_grads = _loss_and_grads(model, lambda: ordinary_loss(model, plain))
    packed_value, packed_grads = _loss_and_grads(model, lambda: packed_loss(model, packed)[0])
    torch.testing.assert_close(packed_value, plain_loss, rtol=1e-10, atol=1e-10)
    assert_same_gradients(packed_grads, plain_grads)
    assert packed["input_ids"].shape[0] == len(packs)


def test_packed_loss_matches_mean_of_per_example_losses(spider_examples, tokenizer):
    """Token-weighted: sum over examples of (loss x label tokens) / all label tokens."""
    model = _tiny("qwen2", len(tokenizer))
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for example in spider_examples:
            n = sum(label != IGNORE_INDEX for label in example["labels"])
            total += ordinary_loss(model, collate([{"input_ids": example["input_ids"], "labels": example["labels"]}])).item() * n
            tokens += n
        packed = PrefixPackCollator(tokenizer.pad_token_id)(pack_examples(spider_examples, 100_000))
        loss, stats = packed_loss(model, packed)
    assert stats["label_tokens"] == tokens
    assert loss.item() == pytest.approx(total / tokens, rel=1e-10)


def test_gradient_checkpointing_and_lora_give_the_same_gradients(spider_examples, tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        _tiny("qwen2", len(tokenizer)),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
    )
    packed = PrefixPackCollator(tokenizer.pad_token_id)(pack_examples(spider_examples, 100_000))
    plain = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(
        [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in spider_examples]
    )
    model.train()
    plain_loss, plain_grads = _loss_and_grads(model, lambda: ordinary_loss(model, plain))
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    packed_value, packed_grads = _loss_and_grads(model, lambda: packed_loss(model, packed)[0])
    assert all("lora_" in name for name in packed_grads) and len(packed_grads) > 0
    torch.testing.assert_close(packed_value, plain_loss, rtol=1e-10, atol=1e-10)
    assert_same_gradients(packed_grads, plain_grads)


def test_an_ordinary_causal_mask_would_not_match(spider_examples, tokenizer):
    """The control: the same pack with segments seeing each other is a different loss."""
    model = _tiny("qwen2", len(tokenizer))
    packed = PrefixPackCollator(tokenizer.pad_token_id)(pack_examples(spider_examples, 100_000))
    leaky = dict(packed, attention_mask=torch.ones_like(packed["attention_mask"]).tril())
    with torch.no_grad():
        right, wrong = packed_loss(model, packed)[0], packed_loss(model, leaky)[0]
    assert abs(right.item() - wrong.item()) > 1e-4
