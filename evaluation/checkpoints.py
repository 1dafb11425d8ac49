"""Choose a training run's checkpoint without looking at dev: greedy EX on the held-out train
databases at every milestone.

A long run commits a milestone every ``milestone_steps`` steps (``training/milestones.py``)
and keeps only the newest in the tree; git keeps the others. This finds them all (every
commit that touched ``training/milestones/RUN``, and the tree), keeps those trained on the
same data as the newest (the same data fingerprint: an abandoned earlier attempt of the run
is listed and skipped), and evaluates each one's adapter greedily on the questions of the
databases the training held out: the robustness file's 442 in Spider's wording, and with
``--reworded`` in the file's wording too (``evaluation/robustness/``). Runs go to
``results/checkpoints/RUN/step-N-original`` (``-reworded``); a finished step is not run
again and an interrupted one resumes (``evaluation.evaluate``). ``--also DIR`` adds other
adapter folders, e.g. the run's final output.

Then it prints, and writes to ``results/checkpoints/RUN/README.md``, a table: each step's
learning rate and mean training loss over its last logged steps, EX with its 95% interval,
and the paired difference against the base model (``--baseline``, the committed robustness
runs); and the choice, the step with the highest EX in Spider's wording (ties: the higher
reworded EX, then the later step). Dev is for the chosen adapter alone, once.

    nice -n 10 python -m evaluation.checkpoints --run qwen2.5-coder-0.5b-cpu-epoch --threads 1 [--reworded]
    python -m evaluation.checkpoints --run qwen2.5-coder-0.5b-cpu-epoch --list     # what it finds, nothing run
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from evaluation import compare, evaluate


ROBUSTNESS = Path("evaluation/robustness/train_held_out_reworded.jsonl")
BASELINE = "results/robustness/qwen2.5-coder-0.5b"
FINGERPRINT = "data_fingerprint.txt"
CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
WORDINGS = ("original", "reworded")


@dataclasses.dataclass(frozen=True)
class Milestone:
    step: int
    source: str
    """A commit id, or "tree" (the file system)."""
    path: str
    """The folder: inside the repository for a commit, on disk for "tree"."""
    fingerprint: str


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True).stdout


def repository_of(folder: Path) -> Path:
    try:
        return Path(git(folder if folder.is_dir() else Path.cwd(), "rev-parse", "--show-toplevel").decode().strip())
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"{folder} is not inside a git repository: {error.stderr.decode().strip()}") from None


def committed_milestones(repo: Path, folder: str) -> list[Milestone]:
    """Every ``checkpoint-N`` under ``folder`` in every commit that touched it, newest commit first."""
    found = []
    for commit in git(repo, "log", "--format=%H", "--", folder).decode().split():
        for path in git(repo, "ls-tree", "--name-only", commit, folder + "/").decode().splitlines():
            match = CHECKPOINT.search(path)
            if match:
                try:
                    fingerprint = git(repo, "show", f"{commit}:{path}/{FINGERPRINT}").decode().strip()
                except subprocess.CalledProcessError:
                    fingerprint = ""
                found.append(Milestone(int(match.group(1)), commit, path, fingerprint))
    return found


def folder_milestone(folder: Path) -> Milestone:
    """An adapter folder on disk: its step from its name (``checkpoint-N``) or its trainer state."""
    match = CHECKPOINT.search(folder.name)
    state = folder / "trainer_state.json"
    if match:
        step = int(match.group(1))
    elif state.is_file():
        step = json.loads(state.read_text())["global_step"]
    else:
        raise SystemExit(f"{folder}: no step in its name (checkpoint-N) and no trainer_state.json.")
    if not (folder / "adapter_config.json").is_file():
        raise SystemExit(f"{folder} is not a LoRA adapter folder (no adapter_config.json).")
    fingerprint = folder / FINGERPRINT
    return Milestone(step, "tree", str(folder), fingerprint.read_text().strip() if fingerprint.is_file() else "")


def find_milestones(repo: Path, milestone_dir: Path, also: list[Path]) -> tuple[list[Milestone], list[Milestone]]:
    """(the milestones to evaluate, one per step; those skipped as trained on other data, one
    per step and data).

    The run's data is the newest milestone's (the tree's, else the newest commit's); extra
    folders (``also``) are always kept."""
    in_tree = sorted((folder_milestone(p) for p in milestone_dir.glob("checkpoint-*") if p.is_dir()), key=lambda m: -m.step)
    relative = milestone_dir.resolve().relative_to(repo.resolve()).as_posix()
    everything = in_tree + committed_milestones(repo, relative)
    if not everything and not also:
        raise SystemExit(f"No milestones in {milestone_dir}, in the tree or in git history.")
    fingerprint = everything[0].fingerprint if everything else None
    chosen: dict[int, Milestone] = {}
    skipped: dict[tuple[int, str], Milestone] = {}
    for milestone in everything:  # the tree first, then the newest commit: keep the first of each
        if milestone.fingerprint != fingerprint:
            skipped.setdefault((milestone.step, milestone.fingerprint), milestone)
        else:
            chosen.setdefault(milestone.step, milestone)
    for folder in also:
        extra = folder_milestone(folder)
        chosen[extra.step] = extra
    return sorted(chosen.values(), key=lambda m: m.step), list(skipped.values())


def checked_out(milestone: Milestone, repo: Path, scratch: Path) -> Path:
    """The milestone's folder on disk (extracted from its commit into ``scratch``)."""
    if milestone.source == "tree":
        return Path(milestone.path)
    archive = git(repo, "archive", "--format=tar", milestone.source, milestone.path)
    target = scratch / milestone.source
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / milestone.path


def held_out_questions(path: Path) -> tuple[list[str], int]:
    """(the held-out databases, how many questions) of the robustness file (``evaluation.evaluate``
    checks its lines against Spider)."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return sorted({row["db_id"] for row in rows}), len(rows)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--questions {path}: not a JSON-lines file of held-out questions ({error}).") from None


def run_folder(out: Path, step: int, wording: str) -> Path:
    return out / f"step-{step}-{wording}"


def evaluate_milestone(adapter: Path, folder: Path, wording: str, args) -> None:
    if (folder / "metrics.json").is_file():
        return
    databases, _ = held_out_questions(args.questions)
    chosen = ["--questions", str(args.questions)] if wording == "reworded" else ["--databases", ",".join(databases)]
    # The model's SQL as written, as every milestone before column fixes and the base runs were measured.
    options = ["--model", args.model, "--adapter", str(adapter), "--split", "train", "--out", str(folder),
               "--no-column-fixes"]
    options += ["--spider", args.spider] if args.spider else []
    options += ["--threads", str(args.threads)] if args.threads else []
    options += ["--workers", str(args.workers)] if args.workers else []
    evaluate.main(options + chosen)


def training_state(adapter: Path, last: int = 10) -> tuple[float | None, float | None]:
    """(learning rate at the step, mean training loss over the last ``last`` logged steps)."""
    state = adapter / "trainer_state.json"
    if not state.is_file():
        return None, None
    logged = [e for e in json.loads(state.read_text()).get("log_history", []) if "loss" in e]
    if not logged:
        return None, None
    losses = [e["loss"] for e in logged[-last:]]
    return logged[-1].get("learning_rate"), sum(losses) / len(losses)


def metrics_of(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def choose(rows: list[dict]) -> dict | None:
    """The row with the highest EX in Spider's wording; ties: higher reworded EX, then later step."""
    scored = [r for r in rows if r["original"] is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["original"]["ex"], (r["reworded"] or {}).get("ex", 0.0), r["step"]))


def against_baseline(folder: Path, baseline: Path) -> str:
    if not (baseline / "scored.jsonl").is_file() or not (folder / "scored.jsonl").is_file():
        return ""
    r = compare.compare(baseline, folder)["ex"]
    return f"{100 * r['difference']:+.1f} ({r['a_only']} / {r['b_only']}, p = {r['p_value']:.2g})"


def cell(metrics: dict | None) -> str:
    if metrics is None:
        return "not run"
    low, high = metrics["ex_ci95"]
    return f"{100 * metrics['ex']:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def table(rows: list[dict], baseline: str, out: Path) -> str:
    lines = [
        "| step | source | learning rate | train loss (last 10) | EX original (95% CI) | vs base | EX reworded (95% CI) | vs base |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = f"{r['learning_rate']:.2e}" if r["learning_rate"] is not None else ""
        loss = f"{r['loss']:.3f}" if r["loss"] is not None else ""
        source = "tree" if r["source"] == "tree" else f"`{r['source'][:7]}`"
        versus = [against_baseline(run_folder(out, r["step"], w), Path(f"{baseline}-{w}")) for w in WORDINGS]
        lines.append(
            f"| {r['step']} | {source} | {rate} | {loss} | {cell(r['original'])} | {versus[0]} | {cell(r['reworded'])} | {versus[1]} |"
        )
    return "\n".join(lines)


def report(rows: list[dict], skipped: list[Milestone], args, out: Path) -> str:
    _, count = held_out_questions(args.questions)
    best = choose(rows)
    parts = [
        f"# Checkpoints of `{args.run}` on the held-out train questions",
        "",
        f"`python -m evaluation.checkpoints --run {args.run}{' --reworded' if args.reworded else ''}`: greedy EX on "
        f"the {count} questions of the databases the training held out (`{args.questions}`), in Spider's "
        f"wording and reworded; \"vs base\" is the paired difference in points against `{args.baseline}-*` "
        "(questions right only in the base run / only in this one, exact McNemar p). Engines and CPU kinds are "
        "in each run's `metrics.json`.",
        "",
        table(rows, args.baseline, out),
        "",
        f"Chosen: step {best['step']} ({100 * best['original']['ex']:.1f}% EX in Spider's wording)." if best
        else "Chosen: none yet (no step evaluated).",
    ]
    if skipped:
        listed = ", ".join(f"step {m.step} at `{m.source[:7]}`" for m in skipped)
        parts += ["", f"Skipped, trained on other data than the newest milestone: {listed}."]
    return "\n".join(parts) + "\n"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run's name: its milestones are in training/milestones/RUN")
    parser.add_argument("--milestones", help="the milestone folder (default: training/milestones/RUN)")
    parser.add_argument("--also", action="append", type=Path, default=[], help="another adapter folder to evaluate")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider", help="registry entry whose base the adapters fit")
    parser.add_argument("--questions", type=Path, default=ROBUSTNESS, help="the held-out questions, reworded")
    parser.add_argument("--reworded", action="store_true", help="also evaluate in the file's wording")
    parser.add_argument("--baseline", default=BASELINE, help="base model runs: BASELINE-original and BASELINE-reworded")
    parser.add_argument("--out", type=Path, help="default: results/checkpoints/RUN")
    parser.add_argument("--min-step", type=int, default=0, help="evaluate only milestones from this step on (all are listed)")
    parser.add_argument("--list", action="store_true", help="list the milestones found and their runs, run nothing")
    parser.add_argument("--spider", help="Spider folder (default: evaluation.evaluate's)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workers", type=int)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    milestone_dir = Path(args.milestones or Path("training/milestones") / args.run)
    out = args.out or Path("results/checkpoints") / args.run
    repo = repository_of(milestone_dir)
    milestones, skipped = find_milestones(repo, milestone_dir, args.also)
    wordings = WORDINGS if args.reworded else WORDINGS[:1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="milestones-") as scratch:
        for milestone in milestones:
            adapter = checked_out(milestone, repo, Path(scratch))
            if not args.list and milestone.step >= args.min_step:  # earlier ones stay in the table as they are
                for wording in wordings:
                    evaluate_milestone(adapter, run_folder(out, milestone.step, wording), wording, args)
            rate, loss = training_state(adapter)
            rows.append({
                "step": milestone.step, "source": milestone.source, "learning_rate": rate, "loss": loss,
                **{w: metrics_of(run_folder(out, milestone.step, w)) for w in WORDINGS},
            })
    text = report(rows, skipped, args, out)
    if not args.list:
        out.mkdir(parents=True, exist_ok=True)
        (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
