"""Prompts for `xedge demo`: a few real questions from ../shared/data/eval, or built-in ones if absent."""

from __future__ import annotations

import json
from dataclasses import dataclass

from server.data_root import data_root

BUILTIN = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Where would you put a plate after washing it? Choices: A) cupboard B) floor C) oven D) car E) garden",
    "A train travels 60 km per hour for 3 hours. How far does it travel?",
)


@dataclass(frozen=True)
class DemoPrompt:
    source: str
    text: str


def _gsm8k(line: dict) -> str:
    return f"{line['problem']}\nAnswer with a short calculation and the final number."


def _csqa(line: dict) -> str:
    choices = line["choices"]
    if isinstance(choices, dict):  # {"label": [...], "text": [...]}
        opts = " ".join(f"{lab}) {txt}" for lab, txt in zip(choices["label"], choices["text"], strict=True))
    else:
        opts = " ".join(f"{c['label']}) {c['text']}" for c in choices)
    return f"{line['question']}\nChoices: {opts}\nAnswer with the letter of the best choice."


def load_demo_prompts(n_gsm8k: int = 2, n_csqa: int = 2) -> tuple[list[DemoPrompt], str | None]:
    """(prompts, note): note says why built-in prompts were used, None when real data was found."""
    eval_dir = data_root() / "eval"
    gsm, csqa = eval_dir / "gsm8k_dev.jsonl", eval_dir / "csqa_dev.jsonl"
    if not (gsm.is_file() and csqa.is_file()):
        note = f"{eval_dir} not found: using {len(BUILTIN)} built-in prompts instead of GSM8K/CommonsenseQA"
        return [DemoPrompt("builtin", t) for t in BUILTIN], note
    out: list[DemoPrompt] = []
    for path, n, fmt, name in ((gsm, n_gsm8k, _gsm8k, "gsm8k"), (csqa, n_csqa, _csqa, "csqa")):
        with path.open() as fh:
            for i, line in enumerate(fh):
                if i >= n:
                    break
                out.append(DemoPrompt(f"{name}#{i}", fmt(json.loads(line))))
    return out, None
