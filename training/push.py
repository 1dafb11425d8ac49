"""Publish a trained adapter to the Hugging Face Hub: adapter + model card in ONE commit.

    python -m training.push --adapter runs/qwen2.5-coder-0.5b-cpu --repo you/qwen2.5-coder-0.5b-spider \\
        [--metrics results/RUN/metrics.json results/RUN-best-of-8/metrics.json ...] [--staging DIR] \\
        [--gguf-base BASE.gguf | --no-gguf]
    python -m training.push --adapter training/milestones/RUN/checkpoint-N --recipe training/recipes/R.yaml ...

A milestone (what a long run commits; no recipe, tokenizer or final summary) is published as
it is: its loss curve and training summary come from its ``trainer_state.json``.

The adapter is also staged as a GGUF adapter (``adapter_model.gguf``, llama.cpp's converter:
``text2sql.lora_gguf``) for the llama.cpp backend, made against ``--gguf-base`` (default: the
embedded GGUF of the registry model with the adapter's base).

The card (huggingface_hub ``ModelCardData``) names the real Hub base model (from
adapter_config.json), ``library_name: peft``, the dataset, the training recipe, and the
evaluation as ``model-index`` read from evaluation ``metrics.json`` files, one per way of decoding
(greedy, best of k: each result's ``config`` names it), with rates as fractions: ``n, ex, em,
valid_sql_rate, chatty_rate, ex_ci95, em_ci95, per_hardness{level: {n, ex, em}}, decoding,
engine, cpu, model, split``.
Without a token or network the folder is only staged, and what would be uploaded is printed;
after an upload it prints the commit to pin in the registry (``text2sql/models.yaml``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path



DATASET_ID = "xlangai/spider"
CARD_FILES = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "recipe.yaml",
    "eval_results.json",
]
LOSS_PLOT = "loss_curve.png"
HARDNESS = ("easy", "medium", "hard", "extra")

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A LoRA adapter for [{{ base_model }}](https://huggingface.co/{{ base_model }}) that writes SQLite
queries from a database schema and a question, fine-tuned on [Spider](https://yale-lily.github.io/spider)
(train_spider + train_others) by the text2sql toolkit. The prompt is the toolkit's
`text2sql.prompt.build_messages` (system prompt; `CREATE TABLE` schema with example values;
the question last); the completion is the bare SQL.

## Evaluation
{% if evaluation %}
Spider {{ evaluation.split }}, n = {{ evaluation.n }}, execution accuracy (EX) and exact set match (EM),
95% confidence intervals in brackets; "valid SQL" is the share of answers SQLite ran.

| decoding | EX | EM | valid SQL | chatty |
|---|---|---|---|---|
{% for run in evaluation.runs %}| {{ run.label }} | {{ run.ex_text }} | {{ run.em_text }} | {{ run.valid_text }} | {{ run.chatty_text }} |
{% endfor %}
EX by Spider hardness:

| hardness | {% for run in evaluation.runs %}{{ run.label }} | {% endfor %}
|---|{% for run in evaluation.runs %}---|{% endfor %}
{% for level in evaluation.levels %}| {{ level.name }} (n = {{ level.n }}) | {% for ex in level.ex %}{{ ex }} | {% endfor %}
{% endfor %}
{% for run in evaluation.runs %}{% if run.engine %}- {{ run.label }}: {{ run.engine }}{% if run.cpu %}, CPU {{ run.cpu }}{% endif %}
{% endif %}{% endfor %}{% else %}
Not evaluated yet: publish with `--metrics results/<run>/metrics.json` to add the results.
{% endif %}
## Training

Training metrics: {{ train_metrics }}
{% if loss_plot %}
![Training loss per step]({{ loss_plot }})
{% endif %}
Recipe (`python -m training.train --config recipe.yaml`):

```yaml
{{ recipe }}```

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{{ base_model }}")
model = PeftModel.from_pretrained(base, "{{ repo_id }}")
tokenizer = AutoTokenizer.from_pretrained("{{ tokenizer_repo }}")
```
"""


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def with_interval(value: float | None, interval: list | None) -> str:
    text = percent(value)
    return text + (f" [{percent(interval[0])}, {percent(interval[1])}]" if interval else "")


def decoding_label(metrics: dict) -> str:
    """"greedy" or "best of K", from a run's ``decoding`` (runs from before it was recorded were
    greedy), with ", SQL as written" for a run whose column names were not put right."""
    decoding = metrics.get("decoding") or {}
    label = f"best of {decoding['k']}" if decoding.get("mode") == "best-of-k" else "greedy"
    return label + (", SQL as written" if metrics.get("fix_column_names") is False else "")


def eval_results(runs: list[dict]) -> list:
    """model-index entries for each run (its decoding as the config): EX and EM, then EX per
    hardness level."""
    from huggingface_hub import EvalResult

    results = []
    for metrics in runs:
        label = decoding_label(metrics)
        split = metrics.get("split", "dev")
        common = dict(
            task_type="text-generation",
            task_name="Text-to-SQL",
            dataset_type=DATASET_ID,
            dataset_name=f"Spider ({split})",
            dataset_split="validation" if split == "dev" else split,
            metric_config=label,
        )
        results += [
            EvalResult(**common, metric_type="execution_accuracy", metric_name=f"EX ({label})", metric_value=metrics["ex"]),
            EvalResult(**common, metric_type="exact_match", metric_name=f"EM ({label})", metric_value=metrics["em"]),
        ]
        for level in HARDNESS:
            if level in metrics.get("per_hardness", {}):
                results.append(EvalResult(**common, metric_type=f"execution_accuracy_{level}",
                                          metric_name=f"EX ({level}, {label})",
                                          metric_value=metrics["per_hardness"][level]["ex"]))
    return results


def cpu_text(kinds: dict | str | None) -> str | None:
    """The CPU kind(s) a run was generated on, as the leaderboard writes them ("avx512_bf16",
    "amx ×314, avx512_bf16 ×128")."""
    from text2sql.leaderboard import cpu_label

    return cpu_label(kinds) if isinstance(kinds, dict) and kinds else kinds or None


def _evaluation_view(runs: list[dict]) -> dict | None:
    if not runs:
        return None
    first = runs[0]
    levels = [
        {"name": level, "n": first["per_hardness"][level].get("n"),
         "ex": [percent(m.get("per_hardness", {}).get(level, {}).get("ex")) for m in runs]}
        for level in HARDNESS if level in first.get("per_hardness", {})
    ]
    return {
        "split": first.get("split", "dev"),
        "n": first.get("n"),
        "runs": [
            {
                "label": decoding_label(m),
                "ex_text": with_interval(m.get("ex"), m.get("ex_ci95")),
                "em_text": with_interval(m.get("em"), m.get("em_ci95")),
                "valid_text": percent(m.get("valid_sql_rate")),
                "chatty_text": percent(m.get("chatty_rate")),
                "engine": m.get("engine"),
                "cpu": cpu_text(m.get("cpu")),
            }
            for m in runs
        ],
        "levels": levels,
    }


def training_history(adapter_dir: Path) -> list[dict] | None:
    """Every logged step: a finished run's ``loss_curve.json``, else a checkpoint's or
    milestone's ``trainer_state.json`` (the same log history)."""
    if (adapter_dir / "loss_curve.json").is_file():
        return json.loads((adapter_dir / "loss_curve.json").read_text())
    if (adapter_dir / "trainer_state.json").is_file():
        return json.loads((adapter_dir / "trainer_state.json").read_text()).get("log_history")
    return None


def training_summary(adapter_dir: Path) -> dict | None:
    """A finished run's ``train_results.json``; for a milestone, what its trainer state says:
    step, epoch, tokens seen, mean training loss over the logged steps, the last held-out loss."""
    if (adapter_dir / "train_results.json").is_file():
        return json.loads((adapter_dir / "train_results.json").read_text())
    if not (adapter_dir / "trainer_state.json").is_file():
        return None
    state = json.loads((adapter_dir / "trainer_state.json").read_text())
    history = state.get("log_history", [])
    losses = [e["loss"] for e in history if "loss" in e]
    tokens = [e["num_tokens"] for e in history if "num_tokens" in e]
    held_out = [e["eval_loss"] for e in history if "eval_loss" in e]
    return {
        "global_step": state.get("global_step"),
        "max_steps": state.get("max_steps"),
        "epoch": state.get("epoch"),
        "num_tokens": tokens[-1] if tokens else None,
        "mean_train_loss": sum(losses) / len(losses) if losses else None,
        "last_eval_loss": held_out[-1] if held_out else None,
    }


def model_card(adapter_dir: Path, repo_id: str, runs: list[dict] = (), staging_dir: Path | None = None):
    """The card, with ``runs`` (evaluation metrics, one per way of decoding) as its results;
    the recipe, training metrics and tokenizer are looked for in ``staging_dir`` (default:
    ``adapter_dir``), the folder that goes to the Hub."""
    from huggingface_hub import ModelCard, ModelCardData

    staged = staging_dir or adapter_dir
    base_model = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    recipe_file = staged / "recipe.yaml"
    summary = training_summary(adapter_dir)
    data = ModelCardData(
        base_model=base_model,
        library_name="peft",
        datasets=[DATASET_ID],
        license="apache-2.0",
        language=["en"],
        pipeline_tag="text-generation",
        tags=["text-to-sql", "sql", "spider", "lora", "peft", "trl"],
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(list(runs)) if runs else None,
    )
    return ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE,
        model_name=repo_id.split("/")[-1],
        base_model=base_model,
        repo_id=repo_id,
        evaluation=_evaluation_view(list(runs)),
        recipe=recipe_file.read_text() if recipe_file.is_file() else "(recipe.yaml missing)\n",
        train_metrics=json.dumps(summary) if summary else "n/a",
        loss_plot=LOSS_PLOT if training_history(adapter_dir) else None,
        # A milestone carries no tokenizer; LoRA leaves the base's unchanged.
        tokenizer_repo=repo_id if (staged / "tokenizer.json").is_file() else base_model,
    )


def stage(
    adapter_dir: str | Path,
    staging_dir: str | Path,
    metrics_files: list[str | Path],
    repo_id: str,
    gguf_base: str | Path | None = None,
    recipe: str | Path | None = None,
) -> Path:
    """A folder holding exactly what goes to the Hub: the adapter's files (weights in bf16),
    its training log and summary, README.md (its results from ``metrics_files``, evaluation
    ``metrics.json`` of one split), and with ``gguf_base`` (a base GGUF or Hugging Face folder)
    the GGUF adapter. ``adapter_dir`` is a training run's output or a milestone
    (``training/milestones/RUN/checkpoint-N``, which holds no recipe: give ``recipe``)."""
    adapter_dir, staging_dir = Path(adapter_dir), Path(staging_dir)
    for required in ("adapter_config.json", "adapter_model.safetensors"):
        if not (adapter_dir / required).is_file():
            raise FileNotFoundError(f"{adapter_dir} has no {required}: is it a trained adapter folder?")
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    staging_dir.mkdir(parents=True)
    for name in CARD_FILES:
        if (adapter_dir / name).is_file():
            shutil.copy2(adapter_dir / name, staging_dir / name)
    if recipe and not (adapter_dir / "recipe.yaml").is_file():
        shutil.copy2(recipe, staging_dir / "recipe.yaml")
    save_as_bf16(staging_dir / "adapter_model.safetensors")
    if gguf_base:
        from text2sql.lora_gguf import GGUF_NAME, convert

        convert(staging_dir, Path(gguf_base), staging_dir / GGUF_NAME)
    history, summary = training_history(adapter_dir), training_summary(adapter_dir)
    if history:
        (staging_dir / "loss_curve.json").write_text(json.dumps(history, indent=1))
        plot_loss_curve(history, staging_dir / LOSS_PLOT)
    if summary:
        (staging_dir / "train_results.json").write_text(json.dumps(summary, indent=4))
    runs = [json.loads(Path(f).read_text()) for f in metrics_files]
    if len({(m.get("split", "dev"), m.get("n")) for m in runs}) > 1:
        raise ValueError("The metrics files are of different evaluations (split or number of questions).")
    model_card(adapter_dir, repo_id, runs, staging_dir).save(staging_dir / "README.md")
    return staging_dir


def plot_loss_curve(log_history: list[dict], path: Path) -> None:
    """Training loss per step (each step is one database's pack, so it jumps about), a running
    mean of 5 steps, and the held-out loss where it was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    held_out = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=110)
    if train:
        steps, losses = zip(*train)
        axes.plot(steps, losses, color="0.75", linewidth=1, label="training loss (one pack)")
        window = [sum(losses[max(0, i - 4) : i + 1]) / len(losses[max(0, i - 4) : i + 1]) for i in range(len(losses))]
        axes.plot(steps, window, color="tab:blue", linewidth=2, label="running mean of 5 steps")
    if held_out:
        axes.plot(*zip(*held_out), "o", color="tab:orange", label="held-out loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (SQL tokens)")
    axes.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def save_as_bf16(weights_file: Path) -> None:
    """Rewrite a safetensors file with its floating-point tensors in bf16: half the size of the
    fp32 that CPU training writes, and what peft loads onto a base of any dtype."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights_file), framework="pt") as weights:
        metadata = weights.metadata()
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}
    converted = {name: t.to(torch.bfloat16) if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(converted, str(weights_file), metadata=metadata)


def publish(staging_dir: str | Path, repo_id: str, token: str | None = None) -> str | None:
    """Upload the staged folder in one commit; the commit URL, or None (printed what it would do)."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    from text2sql.registry import hub_offline

    files = sorted(p for p in Path(staging_dir).iterdir() if p.is_file())
    token = token or get_token()
    if token is None or hub_offline():
        why = "no Hugging Face token" if token is None else "the Hub can't be reached"
        print(f"Not uploading ({why}). Staged in {staging_dir}; one commit to {repo_id} would add:")
        for path in files:
            print(f"  {path.name:32s} {path.stat().st_size:>12,d} bytes")
        return None
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
    commit = api.create_commit(repo_id, operations=operations, commit_message="LoRA adapter and model card")
    print(f"Uploaded {len(files)} files to {commit.commit_url}")
    print(f"Pin it in the registry (text2sql/models.yaml), under the model's adapter:\n"
          f"      repo_id: {repo_id}\n      revision: {commit.oid}")
    return commit.commit_url


def default_gguf_base(adapter_dir: Path) -> Path:
    """The embedded GGUF of the registry model whose base the adapter was trained on."""
    from text2sql.embedded import embedded_gguf
    from text2sql.registry import default_registry

    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    for spec in default_registry().models.values():
        if spec.base.repo_id == base and spec.base.embedded:
            return embedded_gguf(spec.base.embedded)
    raise SystemExit(f"No registry model has an embedded GGUF of {base}: give --gguf-base, or --no-gguf.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True, help="output_dir of a training run, or a milestone folder")
    parser.add_argument("--recipe", default=None, help="the recipe YAML, for an adapter folder without recipe.yaml")
    parser.add_argument("--repo", required=True, help="Hub repo id, e.g. you/qwen2.5-coder-0.5b-spider")
    parser.add_argument("--metrics", nargs="+", default=[],
                        help="evaluation metrics.json files for the card's results (greedy first, then best of k)")
    parser.add_argument("--staging", default=None, help="staging folder (default: <adapter>/hub)")
    parser.add_argument("--gguf-base", default=None, help="base GGUF (or HF folder) for the GGUF adapter")
    parser.add_argument("--no-gguf", action="store_true", help="don't stage a GGUF adapter")
    options = parser.parse_args(argv)
    gguf_base = None if options.no_gguf else options.gguf_base or default_gguf_base(Path(options.adapter))
    staging = stage(options.adapter, options.staging or Path(options.adapter) / "hub", options.metrics, options.repo,
                    gguf_base, options.recipe)
    publish(staging, options.repo)


if __name__ == "__main__":
    main()
