"""Long real text for calibration, tests and benchmarks, read at run time from the shared data folder.

The text is GSM8K / CommonsenseQA prompts with reference chains of thought
(``router_train/*_train_cot.jsonl``, see ../shared/data/README.md), concatenated record by record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR_ENV = "XEDGE_DATA_ROOT"  # the same variable as server.data_root
_FILES = ("router_train/gsm8k_train_cot.jsonl", "router_train/csqa_train_cot.jsonl")


class SampleTextUnavailable(FileNotFoundError):
    """The shared data folder (or its router_train files) is not there."""


def data_dir() -> Path:
    """``$XEDGE_DATA_ROOT``, else ``../shared/data`` next to the repository."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def long_texts(count: int, min_chars: int, *, root: Path | None = None) -> list[str]:
    """``count`` disjoint texts of at least ``min_chars`` characters each (records are not reused)."""
    root = data_dir() if root is None else root
    paths = [root / name for name in _FILES if (root / name).is_file()]
    if not paths:
        raise SampleTextUnavailable(f"no sample text: expected {[str(root / n) for n in _FILES]}, found none")
    texts, current = [], []
    size = 0
    for path in paths:
        with path.open() as f:
            for line in f:
                rec = json.loads(line)
                piece = f"{rec.get('prompt', '')}\n{rec.get('cot', '')}\n\n"
                current.append(piece)
                size += len(piece)
                if size >= min_chars:
                    texts.append("".join(current))
                    current, size = [], 0
                    if len(texts) == count:
                        return texts
    raise SampleTextUnavailable(f"sample text: wanted {count} x {min_chars} chars, the data holds {len(texts)}")
