"""serving/: every deployment file parsed and held to the registries: the vLLM command line,
the Inference Endpoint (TGI), the Ollama Modelfile (its chat template rendered against
Qwen's own), the llama.cpp server entry; every serving registry's entries against the packaged
registry (names, Hub repos, pinned revisions) and the adapter folder we ship.

    python -m pytest tests/test_serving.py -v
"""

import inspect
import json
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from text2sql.backends.openai import Endpoint
from text2sql.registry import PACKAGED_REGISTRY, Registry
from text2sql.settings import get_settings


ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "serving"
PACKAGED = Registry.load(PACKAGED_REGISTRY)
SERVERS = ["llamacpp", "vllm", "tgi", "ollama"]


def served_registry(server: str) -> Registry:
    return Registry.load(SERVING / server / "models.yaml")


def packaged_twin(spec):
    """The packaged entry serving the same weights: the same base repo and revision, the same adapter."""
    twins = [p for p in PACKAGED.models.values()
             if p.base.repo_id == spec.base.repo_id and p.adapter == spec.adapter and p.backend != "transformers"]
    assert len(twins) == 1, (spec.name, [t.name for t in twins])
    return twins[0]


def adapter_folder(spec) -> Path:
    """Adapter paths in serving registries are as in text2sql/models.yaml (deploy.py installs them there)."""
    return PACKAGED_REGISTRY.parent / spec.adapter.path


def context_needed(spec) -> int:
    return get_settings().max_prompt_tokens + spec.generation["max_new_tokens"]


@pytest.mark.parametrize("server", SERVERS)
def test_each_serving_registry_names_what_the_packaged_one_pins(server):
    registry = served_registry(server)
    assert registry.default in registry.names()
    for spec in registry.models.values():
        assert spec.backend == "openai"
        endpoint = Endpoint.of(spec)  # a valid endpoint, or this raises
        twin = packaged_twin(spec)
        assert spec.base.revision == twin.base.revision and re.fullmatch(r"[0-9a-f]{40}", spec.base.revision)
        assert spec.generation == twin.generation
        if spec.adapter:
            config = json.loads((adapter_folder(spec) / "adapter_config.json").read_text())
            assert config["base_model_name_or_path"] == spec.base.repo_id
        if endpoint.api_key_env:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]+", endpoint.api_key_env)  # a variable's name, never a key


def vllm_command() -> list[str]:
    """The ``vllm serve`` command of serve.sh as its shell would split it (continuations joined)."""
    script = (SERVING / "vllm" / "serve.sh").read_text().replace("\\\n", " ")
    line = next(line for line in script.splitlines() if " vllm serve " in line)
    words = shlex.split(line)
    return words[words.index("vllm"):]


def options(words: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else ""
            found.setdefault(word, []).append(value)
    return found


def test_the_vllm_command_serves_the_pinned_base_and_our_adapter_by_the_entries_names():
    words = vllm_command()
    assert words[:3] == ["vllm", "serve", "Qwen/Qwen2.5-Coder-0.5B-Instruct"]
    given = options(words)
    registry = served_registry("vllm")
    by_model = {Endpoint.of(s).model: s for s in registry.models.values()}
    base_entry = next(s for s in registry.models.values() if s.adapter is None)
    assert given["--revision"] == given["--tokenizer-revision"] == [base_entry.base.revision]
    assert given["--served-model-name"] == [Endpoint.of(base_entry).model]
    assert "--enable-lora" in given and given["--generation-config"] == ["vllm"]
    modules = dict(module.split("=", 1) for module in given["--lora-modules"])
    for name, path in modules.items():
        spec = by_model[name]
        assert (ROOT / path).resolve() == adapter_folder(spec).resolve()
        assert json.loads((ROOT / path / "adapter_config.json").read_text())["r"] <= int(given["--max-lora-rank"][0])
    assert set(by_model) == set(modules) | {Endpoint.of(base_entry).model}
    assert int(given["--max-model-len"][0]) >= max(context_needed(s) for s in registry.models.values())
    for spec in registry.models.values():
        assert urlparse(Endpoint.of(spec).base_url).port == int(given["--port"][0])
        assert f'VLLM_API_KEY="${Endpoint.of(spec).api_key_env}"' in (SERVING / "vllm" / "serve.sh").read_text()


def test_the_vllm_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SERVING / "vllm" / "serve.sh")]).returncode == 0


def test_the_inference_endpoint_is_a_valid_call_serving_the_pinned_base_and_our_adapter():
    from huggingface_hub import create_inference_endpoint

    spec = yaml.safe_load((SERVING / "tgi" / "endpoint.yaml").read_text())
    parameters = inspect.signature(create_inference_endpoint).parameters
    assert set(spec) <= set(parameters)
    required = {n for n, p in parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= set(spec)
    entry = served_registry("tgi").get()
    assert (spec["repository"], spec["revision"]) == (entry.base.repo_id, entry.base.revision)
    adapter = entry.adapter.repo_id + (f"@{entry.adapter.revision}" if entry.adapter.revision else "")
    assert spec["env"]["LORA_ADAPTERS"] == adapter
    assert Endpoint.of(entry).model == entry.adapter.repo_id  # TGI picks the adapter by the chat API's model
    assert int(spec["env"]["MAX_TOTAL_TOKENS"]) >= context_needed(entry)
    assert int(spec["env"]["MAX_INPUT_TOKENS"]) >= get_settings().max_prompt_tokens
    assert re.fullmatch(r"ghcr\.io/huggingface/text-generation-inference:\d+\.\d+\.\d+", spec["custom_image"]["url"])


def modelfile() -> tuple[dict[str, list[str]], str, str]:
    """(instruction -> values, TEMPLATE, the name `ollama create` gives it) of the Modelfile."""
    text = (SERVING / "ollama" / "Modelfile").read_text()
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)
    name = re.search(r"ollama create (\S+) -f serving/ollama/Modelfile", text).group(1)
    found: dict[str, list[str]] = {}
    for line in re.sub(r'^TEMPLATE """.*?"""$', "", text, flags=re.S | re.M).splitlines():
        if line.strip() and not line.startswith("#"):
            instruction, value = line.split(" ", 1)
            found.setdefault(instruction, []).append(value)
    return found, template, name


def go_template_as_jinja(template: str) -> str:
    """The Go template constructs the Modelfile uses, written in Jinja (anything else stays
    and fails to render the same)."""
    for go, jinja in (("{{- range .Messages }}", "{%- for message in messages %}"), ("{{ end }}", "{% endfor %}"),
                      ("{{ .Role }}", "{{ message.role }}"), ("{{ .Content }}", "{{ message.content }}")):
        template = template.replace(go, jinja)
    return template


def test_the_ollama_modelfile_renders_our_prompts_as_qwens_template_and_names_the_entry():
    import jinja2

    from tests.test_llamacpp import PROMPTS, QUESTIONS, SINGER
    from text2sql.backends.llama_runtime import LlamaModel
    from text2sql.backends.llamacpp import ChatTemplate
    from text2sql.embedded import embedded_gguf
    from text2sql.llama_server import EXPORTED
    from text2sql.prompt import build_repair_messages

    found, template, name = modelfile()
    assert [found["FROM"], found["ADAPTER"]] == [[f"./{EXPORTED[0]}"], [f"./{EXPORTED[1]}"]]
    parameters = dict(value.split(" ", 1) for value in found["PARAMETER"] if not value.startswith("stop "))
    entry = served_registry("ollama").get()
    assert int(parameters["num_ctx"]) >= context_needed(entry)
    assert (parameters["top_k"], parameters["repeat_penalty"], parameters["min_p"]) == ("0", "1.0", "0.0")
    assert "stop <|im_end|>" in found["PARAMETER"]
    assert Endpoint.of(entry).model == name
    qwen = LlamaModel(embedded_gguf(entry.base.embedded), vocab_only=True)
    reference = ChatTemplate(qwen.chat_template(), qwen.special_tokens())
    ours = jinja2.Environment(keep_trailing_newline=True).from_string(go_template_as_jinja(template))  # as Go keeps it
    repair = build_repair_messages(SINGER, QUESTIONS[0], "SELECT count(*) FROM singers", "no such table: singers")
    for messages in PROMPTS + [repair]:
        assert ours.render(messages=messages) == reference.render(messages)


def test_the_llamacpp_entry_asks_for_the_packaged_entry_the_server_is_started_with():
    for spec in served_registry("llamacpp").models.values():
        served = PACKAGED.get(Endpoint.of(spec).model)  # text2sql.llama_server serves it under its own name
        assert (served.base, served.adapter) == (spec.base, spec.adapter)


def test_the_space_deploys_with_a_serving_registry(tmp_path):
    """space_config/deploy.py --registry: the folder carries it and passes every check."""
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("deploy", ROOT / "space_config" / "deploy.py")
    deploy = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(deploy)
    folder = deploy.assemble(tmp_path / "space", SERVING / "vllm" / "models.yaml")
    assert (folder / "text2sql" / "models.yaml").read_text() == (SERVING / "vllm" / "models.yaml").read_text()
    assert deploy.check(folder) == []
