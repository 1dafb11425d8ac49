"""Assemble the Hugging Face Space folder, check it, and upload it.

    python space_config/deploy.py --space USER/NAME --dry-run     # build + check only
    python space_config/deploy.py --space USER/NAME               # ... and upload (needs HF_TOKEN or `hf auth login`)
    python space_config/deploy.py --space USER/NAME --registry serving/vllm/models.yaml   # models behind a server (serving/README.md)

The Space is: this folder's README.md (front matter) and requirements.txt, app.py, the
webapp/ and text2sql/ packages, examples/ (SQL only: the app builds the databases) and
results/*/metrics.json (the leaderboard), with text2sql/models.yaml replaced by this
folder's registry (Hub repos at pinned revisions).
The check refuses a folder whose front matter, pins or imports are wrong, before anything
is uploaded: sdk gradio at the installed gradio version, python 3.12, app_file present,
every registry model pinned to a commit and listed under ``models:``, no training
packages in requirements.txt, and ``import app`` working from the folder alone.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = ["app.py", "webapp", "text2sql", "examples"]
LEFT_OUT = ["__pycache__", "*.pyc", "*.sqlite", "*.partial", "*.egg-info"]
NOT_FOR_THE_SPACE = {"trl", "datasets", "evaluate", "unsloth", "bitsandbytes", "pytest", "playwright", "gguf"}
MAX_SHORT_DESCRIPTION = 60


def assemble(out_dir: Path, registry: Path = HERE / "models.yaml") -> Path:
    """Copy the Space's files into ``out_dir`` (emptied first), with ``registry`` as its text2sql/models.yaml."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, out_dir / name, ignore=shutil.ignore_patterns(*LEFT_OUT))
        else:
            shutil.copy2(source, out_dir / name)
    shutil.copy2(HERE / "README.md", out_dir / "README.md")
    shutil.copy2(HERE / "requirements.txt", out_dir / "requirements.txt")
    shutil.copy2(registry, out_dir / "text2sql" / "models.yaml")
    for metrics in ROOT.glob("results/*/metrics.json"):  # the leaderboard (small files)
        target = out_dir / metrics.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(metrics, target)
    return out_dir


def front_matter(readme: Path) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", readme.read_text(), re.S)
    if not match:
        raise ValueError(f"{readme} does not start with a YAML front matter block")
    return yaml.safe_load(match.group(1))


def requirement_names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line)[0].lower().replace("_", "-"))
    return names


def check(folder: Path) -> list[str]:
    """Everything wrong with the assembled Space folder (empty: ready to upload)."""
    import gradio

    problems = []
    meta = front_matter(folder / "README.md")
    expected = {"sdk": "gradio", "sdk_version": gradio.__version__, "python_version": "3.12", "app_file": "app.py"}
    for key, value in expected.items():
        if str(meta.get(key)) != value:
            problems.append(f"README.md: {key} is {meta.get(key)!r}, expected {value!r}")
    if not (folder / str(meta.get("app_file"))).is_file():
        problems.append(f"README.md: app_file {meta.get('app_file')!r} is not in the folder")
    for key in ("license", "short_description", "models", "datasets"):
        if not meta.get(key):
            problems.append(f"README.md: {key} is missing")
    if len(meta.get("short_description") or "") > MAX_SHORT_DESCRIPTION:
        problems.append(f"README.md: short_description is longer than {MAX_SHORT_DESCRIPTION} characters")

    registry = yaml.safe_load((folder / "text2sql" / "models.yaml").read_text())
    for name, entry in registry["models"].items():
        for part in ("base", "adapter"):
            weights = entry.get(part)
            if not weights:
                continue
            if weights.get("path"):  # shipped inside the text2sql package (our own adapter)
                if not (folder / "text2sql" / weights["path"] / "adapter_config.json").is_file():
                    problems.append(f"models.yaml: {name} {part} folder {weights['path']} is not in text2sql/")
                if not weights.get("revision"):  # no Hub copy pinned yet: the shipped folder is the model
                    continue
            if not re.fullmatch(r"[0-9a-f]{40}", str(weights.get("revision", ""))):
                problems.append(f"models.yaml: {name} {part} is not pinned to a 40-character commit")
            if weights.get("repo_id") not in (meta.get("models") or []):
                problems.append(f"README.md: models: lacks {weights.get('repo_id')} (used by {name})")

    extra = requirement_names(folder / "requirements.txt") & NOT_FOR_THE_SPACE
    if extra:
        problems.append(f"requirements.txt: not needed by the Space: {', '.join(sorted(extra))}")
    if list(folder.rglob("*.sqlite")) or list(folder.rglob("__pycache__")):
        problems.append("the folder holds built files (*.sqlite or __pycache__)")

    imported = subprocess.run(
        [sys.executable, "-B", "-c", "import app; print(app.demo.title)"], cwd=folder, capture_output=True, text=True,
        timeout=300,
    )
    if imported.returncode != 0:
        problems.append("`import app` fails in the Space folder:\n" + imported.stderr[-2000:])
    return problems


def upload(folder: Path, space: str, private: bool = False, api=None) -> str:
    """Create the Space if needed and upload the folder in one commit; returns the commit URL."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
    commit = api.upload_folder(
        repo_id=space, repo_type="space", folder_path=str(folder), commit_message="Deploy text2sql app",
        delete_patterns=["*.py", "*.sql", "*.yaml", "*.json"],  # so files deleted here disappear from the Space too
    )
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="USER/NAME of the Space")
    parser.add_argument("--dry-run", action="store_true", help="build and check the folder, upload nothing")
    parser.add_argument("--out", type=Path, help="where to build the folder (default: a temporary one)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--registry", type=Path, default=HERE / "models.yaml",
                        help="the Space's model registry (default: this folder's; serving/*/models.yaml: models behind a server)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", args.space):
        parser.error(f"--space must look like USER/NAME, not {args.space!r}")

    folder = assemble(args.out or Path(tempfile.mkdtemp(prefix="text2sql-space-")) / "space", args.registry)
    problems = check(folder)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"Space folder ready: {folder}")
    if args.dry_run:
        return 0
    print(f"Uploaded: {upload(folder, args.space, args.private)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
