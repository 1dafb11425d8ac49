"""space_config/deploy.py: the Space folder is assembled and checked; the upload calls the Hub API right.

    python -m pytest tests/app/test_deploy.py -v
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]


def load_deploy():
    spec = importlib.util.spec_from_file_location("deploy", ROOT / "space_config" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = load_deploy()


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The folder built by the real command line, as a user runs it."""
    out = tmp_path_factory.mktemp("space") / "space"
    result = subprocess.run(
        [sys.executable, "space_config/deploy.py", "--space", "someone/text2sql", "--dry-run", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"Space folder ready: {out}" in result.stdout
    return out


def test_dry_run_builds_a_complete_lean_space(space):
    assert (space / "app.py").is_file() and (space / "webapp" / "api.py").is_file()
    assert (space / "text2sql" / "pipeline.py").is_file() and (space / "examples" / "shop.sql").is_file()
    assert not list(space.rglob("*.sqlite")) and not list(space.rglob("__pycache__"))
    assert not (space / "tests").exists() and not (space / "space_config").exists()
    meta = deploy.front_matter(space / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert meta["python_version"] == "3.12" and meta["app_file"] == "app.py"
    assert "xlangai/spider" in meta["datasets"] and "Qwen/Qwen2.5-Coder-0.5B-Instruct" in meta["models"]
    names = deploy.requirement_names(space / "requirements.txt")
    assert {"torch", "transformers", "peft", "sqlite-utils", "huggingface-hub"} <= names
    assert not names & {"trl", "datasets", "unsloth", "gradio"}


def test_the_space_registry_pins_every_model_to_a_commit(space):
    registry = yaml.safe_load((space / "text2sql" / "models.yaml").read_text())
    assert registry["default"] == "qwen2.5-coder-0.5b-spider"
    assert (space / "text2sql" / registry["models"]["qwen2.5-coder-0.5b-spider"]["adapter"]["path"] / "adapter_model.safetensors").is_file()
    for entry in registry["models"].values():
        assert len(entry["base"]["revision"]) == 40 and "embedded" not in entry["base"]


def test_check_finds_what_is_wrong(space, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(space, broken)
    readme = broken / "README.md"
    readme.write_text(readme.read_text().replace("sdk_version: 6.31.0", "sdk_version: 5.0.0")
                      .replace("  - HuggingFaceTB/SmolLM2-135M-Instruct\n", ""))
    (broken / "requirements.txt").write_text("torch==2.13.0\ntrl==1.16.0\n")
    registry = broken / "text2sql" / "models.yaml"
    registry.write_text(registry.read_text().replace("ea3f2471cf1b1f0db85067f1ef93848e38e88c25", "main"))
    (broken / "webapp" / "results.py").unlink()
    problems = "\n".join(deploy.check(broken))
    assert "sdk_version is '5.0.0', expected '6.31.0'" in problems
    assert "models: lacks HuggingFaceTB/SmolLM2-135M-Instruct" in problems
    assert "not needed by the Space: trl" in problems
    assert "qwen2.5-coder-0.5b base is not pinned" in problems
    assert "`import app` fails" in problems and "webapp.results" in problems


class FakeHub:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))

    def upload_folder(self, **options):
        self.calls.append(("upload_folder", options))
        return "https://huggingface.co/spaces/someone/text2sql/commit/abc"


def test_upload_creates_a_gradio_space_and_uploads_the_folder_in_one_commit(space):
    hub = FakeHub()
    assert deploy.upload(space, "someone/text2sql", api=hub).endswith("/commit/abc")
    (_, repo_id, options), (_, upload) = hub.calls
    assert repo_id == "someone/text2sql"
    assert options == {"repo_type": "space", "space_sdk": "gradio", "exist_ok": True, "private": False}
    assert upload["repo_id"] == "someone/text2sql" and upload["repo_type"] == "space"
    assert upload["folder_path"] == str(space)


def test_a_malformed_space_name_is_refused(capsys):
    with pytest.raises(SystemExit):
        deploy.main(["--space", "no-slash", "--dry-run"])
    assert "USER/NAME" in capsys.readouterr().err
