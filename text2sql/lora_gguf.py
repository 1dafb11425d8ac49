"""peft LoRA adapters as GGUF adapters for the llama.cpp backend, made by llama.cpp's own
converter (``convert_lora_to_gguf.py``, from the llama-cpp-python sources the engine was
built from: ``scripts/install.sh`` puts them in ``<venv>/share/llama.cpp-converter-<version>``).

The converter reads the adapter's weights and the base model's ``config.json``; for a GGUF
base that config is written from the GGUF's metadata (transformers), so no other copy of the
base is needed. The llama.cpp backend converts an adapter on first use and caches the result
under ``<cache>/lora-gguf/`` (keyed by the adapter files' sha256); ``training.push`` stages the
GGUF beside the peft files.

    python -m text2sql.lora_gguf --model qwen2.5-coder-0.5b-spider     # a registry entry's adapter, into the cache
    python -m text2sql.lora_gguf ADAPTER_DIR --base BASE.gguf --out adapter_model.gguf
    python -m text2sql.lora_gguf --install-converter llama_cpp_python-0.3.36.tar.gz   # scripts/install.sh does this
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from text2sql.errors import ModelUnavailableError
from text2sql.settings import get_settings


GGUF_NAME = "adapter_model.gguf"
"""A GGUF adapter shipped in an adapter folder under this name is used as it is."""
CONVERTER_PARTS = ("convert_lora_to_gguf.py", "conversion", "gguf-py")
"""What the converter needs from the llama.cpp sources (its model definitions and gguf writer)."""


def converter_dir() -> Path:
    version = importlib.metadata.version("llama-cpp-python")
    return Path(sys.prefix) / "share" / f"llama.cpp-converter-{version}"


def install_converter(sdist: Path) -> Path:
    """Copy the converter out of a llama-cpp-python source archive (the one pip built)."""
    target = converter_dir()
    with tarfile.open(sdist) as archive, tempfile.TemporaryDirectory() as scratch:
        root = archive.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
        members = [m for m in archive.getmembers()
                   if any(m.name == root + part or m.name.startswith(root + part + "/") for part in CONVERTER_PARTS)]
        if not members:
            raise SystemExit(f"{sdist} holds no {root}convert_lora_to_gguf.py: not a llama-cpp-python source archive?")
        archive.extractall(scratch, members=members, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(scratch, root).rename(target)
    return target


def write_base_config(base: Path, folder: Path) -> Path:
    """``folder`` with the base model's config.json: copied from a Hugging Face folder, or
    written from a GGUF file's metadata."""
    if base.is_dir():
        folder.joinpath("config.json").write_bytes((base / "config.json").read_bytes())
        return folder
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(base.parent, gguf_file=base.name)
    config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    config.save_pretrained(folder)
    return folder


def convert(adapter_dir: Path, base: Path, out: Path) -> Path:
    """Write ``adapter_dir``'s LoRA as a GGUF adapter at ``out``, for ``base`` (a GGUF file or
    a Hugging Face model folder)."""
    script = converter_dir() / "convert_lora_to_gguf.py"
    if not script.is_file():
        raise ModelUnavailableError(
            f"llama.cpp's LoRA converter is not installed ({script} is missing): run ./scripts/install.sh, or "
            "python -m text2sql.lora_gguf --install-converter <llama-cpp-python source archive>."
        )
    with tempfile.TemporaryDirectory() as scratch:
        config = write_base_config(base, Path(scratch))
        command = [sys.executable, str(script), str(adapter_dir), "--base", str(config), "--outfile", str(out),
                   "--outtype", "f32"]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not out.is_file():
        raise ModelUnavailableError(f"Converting the adapter {adapter_dir} to GGUF failed:\n{result.stderr[-3000:]}")
    return out


def adapter_digest(adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((adapter_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def cached_conversion(adapter_dir: Path, base: Path) -> Path:
    """The GGUF of ``adapter_dir`` for ``base``, converted on first use (once per machine)."""
    from filelock import FileLock

    target = get_settings().cache_path / "lora-gguf" / f"{adapter_dir.name}-{adapter_digest(adapter_dir)}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():  # else another process converted it while we waited
            print(f"First use of the adapter {adapter_dir.name} with llama.cpp: converting it to GGUF (once) ...",
                  file=sys.stderr)
            partial = target.parent / f"{target.name}.partial"
            convert(adapter_dir, base, partial).rename(target)
    return target


def registry_adapter(model: str) -> Path:
    """Convert (or find cached) the adapter of registry entry ``model``; its GGUF path."""
    from text2sql.backends.llamacpp import adapter_gguf, base_gguf
    from text2sql.registry import default_registry

    spec = default_registry().get(model)
    if spec.adapter is None:
        raise SystemExit(f"{model} has no adapter.")
    return adapter_gguf(spec, base_gguf(spec)[0])[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", nargs="?", type=Path, help="a peft adapter folder")
    parser.add_argument("--base", type=Path, help="the base model: a GGUF file or a Hugging Face folder")
    parser.add_argument("--out", type=Path, help="where to write the GGUF adapter")
    parser.add_argument("--model", help="instead: the adapter of this registry entry, converted into the cache")
    parser.add_argument("--install-converter", type=Path, metavar="SDIST", help="install the converter from this archive")
    args = parser.parse_args(argv)
    if args.install_converter:
        print(install_converter(args.install_converter))
    elif args.model:
        print(registry_adapter(args.model))
    elif args.adapter and args.base and args.out:
        print(convert(args.adapter, args.base, args.out))
    else:
        parser.error("give ADAPTER --base --out, or --model, or --install-converter")


if __name__ == "__main__":
    main()
