"""Publishing: the staged folder and its model card, built from a real adapter and an
evaluation metrics.json; no upload without a token or network.

    python -m pytest tests/test_push.py -v
"""

import json
import shutil

import pytest
from huggingface_hub import ModelCard

from training import push


METRICS = {
    "n": 972,
    "ex": 0.612,
    "em": 0.433,
    "chatty_rate": 0.0,
    "ex_ci95": [0.581, 0.642],
    "em_ci95": [0.402, 0.464],
    "per_hardness": {
        "easy": {"n": 232, "ex": 0.81, "em": 0.74},
        "medium": {"n": 416, "ex": 0.65, "em": 0.47},
        "hard": {"n": 160, "ex": 0.5, "em": 0.3},
        "extra": {"n": 164, "ex": 0.33, "em": 0.12},
    },
    "model": "qwen2.5-coder-0.5b-spider",
    "split": "dev",
}


@pytest.fixture
def trained_dir(tmp_path, tiny_adapter_dirs, smollm2_tokenizer_dir):
    """A training output folder: a real peft adapter (naming the Hub base as train.py makes it
    do), the tokenizer, the recipe and the training metrics."""
    out = tmp_path / "run"
    shutil.copytree(tiny_adapter_dirs["a"], out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    (out / "adapter_config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_tokenizer_dir / name, out / name)
    (out / "recipe.yaml").write_text("model_name_or_path: Qwen/Qwen2.5-Coder-0.5B-Instruct\nlora_r: 16\n")
    (out / "train_results.json").write_text(json.dumps({"train_loss": 0.31, "epoch_examples": 14235}))
    history = [{"step": i, "loss": 1.0 / i} for i in range(1, 9)] + [{"step": 8, "eval_loss": 0.2}]
    (out / "loss_curve.json").write_text(json.dumps(history))
    (out / "checkpoint-5").mkdir()  # not published
    return out


def test_staged_folder_has_the_adapter_and_a_card_with_model_index(tmp_path, trained_dir):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    staged = push.stage(trained_dir, tmp_path / "hub", [tmp_path / "metrics.json"], "me/qwen-spider")
    names = {p.name for p in staged.iterdir()}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "recipe.yaml"} <= names
    assert "checkpoint-5" not in names and "README.md" in names

    card = ModelCard.load(staged / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert card.data.library_name == "peft"
    assert card.data.datasets == ["xlangai/spider"]
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["execution_accuracy"].metric_value == 0.612
    assert results["exact_match"].metric_value == 0.433
    assert results["execution_accuracy_hard"].metric_value == 0.5
    assert results["execution_accuracy"].dataset_type == "xlangai/spider"
    assert results["execution_accuracy"].dataset_split == "validation"
    assert results["execution_accuracy"].metric_config == "greedy"
    assert "| greedy | 61.2% [58.1%, 64.2%] | 43.3% [40.2%, 46.4%] | n/a | 0.0% |" in card.text
    assert "| hard (n = 160) | 50.0% |" in card.text
    assert "lora_r: 16" in card.text and "14235" in card.text
    assert 'PeftModel.from_pretrained(base, "me/qwen-spider")' in card.text
    assert (staged / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "![Training loss per step](loss_curve.png)" in card.text


def test_card_reports_each_way_of_decoding_with_its_engine(tmp_path, trained_dir):
    best_of_8 = {**METRICS, "ex": 0.664, "em": 0.5, "valid_sql_rate": 0.98, "ex_ci95": None, "em_ci95": None,
                 "per_hardness": {**METRICS["per_hardness"], "hard": {"n": 160, "ex": 0.6, "em": 0.4}},
                 "decoding": {"mode": "best-of-k", "k": 8, "temperature": 0.8},
                 "engine": "llama.cpp (qwen2 1B Q4_K - Medium; 2 threads)", "cpu": "avx512_bf16"}
    (tmp_path / "greedy.json").write_text(json.dumps({**METRICS, "decoding": {"mode": "greedy"}}))
    (tmp_path / "best-of-8.json").write_text(json.dumps(best_of_8))
    staged = push.stage(trained_dir, tmp_path / "hub", [tmp_path / "greedy.json", tmp_path / "best-of-8.json"], "me/q")

    card = ModelCard.load(staged / "README.md")
    results = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert results[("execution_accuracy", "greedy")] == 0.612
    assert results[("execution_accuracy", "best of 8")] == 0.664
    assert results[("execution_accuracy_hard", "best of 8")] == 0.6
    assert "| best of 8 | 66.4% | 50.0% | 98.0% | 0.0% |" in card.text
    assert "| hard (n = 160) | 50.0% | 60.0% |" in card.text
    assert "- best of 8: llama.cpp (qwen2 1B Q4_K - Medium; 2 threads), CPU avx512_bf16" in card.text


def test_card_tells_sql_as_written_from_sql_put_right(tmp_path, trained_dir):
    as_written = {**METRICS, "ex": 0.626, "decoding": {"mode": "greedy"}, "fix_column_names": False}
    (tmp_path / "as-written.json").write_text(json.dumps(as_written))
    (tmp_path / "put-right.json").write_text(json.dumps({**METRICS, "ex": 0.68, "decoding": {"mode": "greedy"}}))
    staged = push.stage(trained_dir, tmp_path / "hub", [tmp_path / "as-written.json", tmp_path / "put-right.json"], "me/q")

    card = ModelCard.load(staged / "README.md")
    results = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert results[("execution_accuracy", "greedy, SQL as written")] == 0.626
    assert results[("execution_accuracy", "greedy")] == 0.68
    assert "| greedy, SQL as written | 62.6%" in card.text and "| greedy | 68.0%" in card.text


def test_card_names_the_cpu_kinds_a_run_was_made_on(tmp_path, trained_dir):
    mixed = {**METRICS, "engine": "llama.cpp", "cpu": {"amx": 314, "avx512_bf16": 128}}
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    staged = push.stage(trained_dir, tmp_path / "hub", [tmp_path / "mixed.json"], "me/q")
    card = ModelCard.load(staged / "README.md")
    assert "- greedy: llama.cpp, CPU amx ×314, avx512_bf16 ×128\n\n## Training" in card.text


def test_metrics_of_different_evaluations_are_refused(tmp_path, trained_dir):
    (tmp_path / "dev.json").write_text(json.dumps(METRICS))
    (tmp_path / "train.json").write_text(json.dumps({**METRICS, "split": "train", "n": 442}))
    with pytest.raises(ValueError, match="different evaluations"):
        push.stage(trained_dir, tmp_path / "hub", [tmp_path / "dev.json", tmp_path / "train.json"], "me/q")


def test_staged_weights_are_bf16_and_equal_the_trained_ones_rounded(tmp_path, trained_dir):
    import torch
    from safetensors.torch import load_file

    trained = load_file(trained_dir / "adapter_model.safetensors")
    staged = load_file(push.stage(trained_dir, tmp_path / "hub", [], "me/q") / "adapter_model.safetensors")
    assert staged.keys() == trained.keys()
    for name, tensor in staged.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, trained[name].to(torch.bfloat16))


def test_card_without_metrics_says_so(tmp_path, trained_dir):
    staged = push.stage(trained_dir, tmp_path / "hub", [], "me/qwen-spider")
    card = ModelCard.load(staged / "README.md")
    assert card.data.eval_results is None
    assert "Not evaluated yet" in card.text


def test_no_token_means_no_upload(tmp_path, trained_dir, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    staged = push.stage(trained_dir, tmp_path / "hub", [], "me/qwen-spider")
    assert push.publish(staged, "me/qwen-spider") is None
    printed = capsys.readouterr().out
    assert "Not uploading (no Hugging Face token)" in printed
    assert "adapter_model.safetensors" in printed and "README.md" in printed


def test_offline_means_no_upload_even_with_a_token(tmp_path, trained_dir, capsys):
    staged = push.stage(trained_dir, tmp_path / "hub", [], "me/qwen-spider")
    assert push.publish(staged, "me/qwen-spider", token="hf_not_a_real_token") is None  # HF_HUB_OFFLINE=1 in tests
    assert "the Hub can't be reached" in capsys.readouterr().out


class RecordingHub:
    """Stands in for huggingface_hub.HfApi (the Hub can't be reached from tests): records the
    calls and answers with a commit the way the Hub does."""

    calls: list = []

    def __init__(self, token):
        self.token = token

    def create_repo(self, repo_id, repo_type, exist_ok):
        self.calls.append(("create_repo", repo_id, repo_type, exist_ok))

    def create_commit(self, repo_id, operations, commit_message):
        from huggingface_hub import CommitInfo

        self.calls.append(("create_commit", repo_id, sorted(op.path_in_repo for op in operations)))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{'a' * 40}", commit_message=commit_message,
                          commit_description="", oid="a" * 40)


def test_an_upload_is_one_commit_and_prints_the_revision_to_pin(tmp_path, trained_dir, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.HfApi", RecordingHub)
    monkeypatch.setattr("text2sql.registry.hub_offline", lambda: False)
    RecordingHub.calls = []
    staged = push.stage(trained_dir, tmp_path / "hub", [], "me/qwen-spider")
    url = push.publish(staged, "me/qwen-spider", token="hf_token")
    assert url == "https://huggingface.co/me/qwen-spider/commit/" + "a" * 40
    (create, commit) = RecordingHub.calls
    assert create == ("create_repo", "me/qwen-spider", "model", True)
    assert commit[0:2] == ("create_commit", "me/qwen-spider")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(commit[2])
    assert "checkpoint-5" not in commit[2]
    assert "repo_id: me/qwen-spider\n      revision: " + "a" * 40 in capsys.readouterr().out


def test_a_folder_without_an_adapter_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        push.stage(tmp_path, tmp_path / "hub", [], "me/x")


def test_a_milestone_is_published_with_its_log_and_the_given_recipe(tmp_path, tiny_adapter_dirs):
    """A committed milestone holds the adapter and trainer state only: the card gets the loss
    curve and summary from the state, the recipe from --recipe, the tokenizer from the base."""
    milestone = tmp_path / "checkpoint-12"
    shutil.copytree(tiny_adapter_dirs["a"], milestone)
    config = json.loads((milestone / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    (milestone / "adapter_config.json").write_text(json.dumps(config))
    history = [{"step": i, "loss": 0.5 / i, "num_tokens": 100.0 * i} for i in range(1, 13)]
    history.append({"step": 12, "eval_loss": 0.25})
    state = {"global_step": 12, "max_steps": 24, "epoch": 0.5, "log_history": history}
    (milestone / "trainer_state.json").write_text(json.dumps(state))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: Qwen/Qwen2.5-Coder-0.5B-Instruct\nlora_r: 32\n")

    staged = tmp_path / "hub"
    push.main(["--adapter", str(milestone), "--repo", "me/q", "--recipe", str(recipe), "--staging", str(staged),
               "--no-gguf"])

    summary = json.loads((staged / "train_results.json").read_text())
    assert summary["global_step"] == 12 and summary["num_tokens"] == 1200.0 and summary["last_eval_loss"] == 0.25
    assert summary["mean_train_loss"] == pytest.approx(sum(0.5 / i for i in range(1, 13)) / 12)
    assert json.loads((staged / "loss_curve.json").read_text()) == history
    assert (staged / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    card = ModelCard.load(staged / "README.md")
    assert "lora_r: 32" in card.text and '"global_step": 12' in card.text
    assert 'AutoTokenizer.from_pretrained("Qwen/Qwen2.5-Coder-0.5B-Instruct")' in card.text
    assert "trainer_state.json" not in {p.name for p in staged.iterdir()}


def test_a_run_with_its_tokenizer_names_itself_for_the_tokenizer(tmp_path, trained_dir):
    card = ModelCard.load(push.stage(trained_dir, tmp_path / "hub", [], "me/q") / "README.md")
    assert 'AutoTokenizer.from_pretrained("me/q")' in card.text
