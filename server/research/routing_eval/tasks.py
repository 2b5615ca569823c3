"""The two routing tasks: GSM8K and CommonsenseQA dev sets, their prompts and exact-match scoring.

Prompts of ``gsm8k`` and ``csqa`` are the ones of the router training data (CITER's formats), so a router
trained there sees the same kind of text at evaluation. Scoring: GSM8K compares the number in the last
``\\boxed{}`` (else the last number) with the reference's boxed answer; CommonsenseQA compares the last label
in parentheses (else what follows the last "the answer is": a bare label, or a choice's exact text) with
the answer key.

``csqa_letter``: the CommonsenseQA dev set asking for the letter only, so an answer needs a few generated
tokens (many items fit the time budget); scored by exact match of the label the output starts with: A-E
after optional spaces/punctuation, followed by ``.`` ``)`` ``:`` ``,`` or the end of the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from client_edge.errors import UnknownNameError

GSM8K_PROMPT = (
    "Solve the following math problem step by step. Ensure all reasoning is shown clearly in LaTeX format, "
    "and you should enclose your answer with \\boxed{{}}.\nQuestion: {question}\nSolution: "
)
CSQA_PROMPT = (
    "Question: {question}\nChoices:\n{choices}\n\nPlease format your response in the following way:\n"
    "[Explanation]. Therefore, the answer is answer (label).\n"
    "Ensure the final sentence includes the answer followed by the label in parentheses.\n\nAnswer and Reasoning:"
)
CSQA_LETTER_PROMPT = (
    "Question: {question}\nChoices:\n{choices}\nAnswer with the letter of the correct choice.\nAnswer:"
)


@dataclass(frozen=True)
class Item:
    task: str
    prompt: str
    gold: str
    choices: tuple[tuple[str, str], ...] = ()  # (label, text) for multiple choice


def _number(s: str) -> str | None:
    s = s.replace(",", "").replace("$", "").strip()
    m = re.findall(r"-?\d+(?:\.\d+)?", s)
    if not m:
        return None
    v = float(m[-1])
    return str(int(v)) if v == int(v) else str(v)


def _last_boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return found[-1] if found else None


def answer_gsm8k(output: str, item: Item) -> str | None:
    boxed = _last_boxed(output)
    return _number(boxed) if boxed is not None else _number(output)


def score_gsm8k(output: str, item: Item) -> bool:
    got = answer_gsm8k(output, item)
    return got is not None and got == _number(item.gold)


def answer_csqa(output: str, item: Item) -> str | None:
    labels = re.findall(r"\(([A-Ea-e])\)", output)
    if labels:
        return labels[-1].upper()
    m = re.findall(r"the answer is:?\s*([^.\n(]+)", output, flags=re.IGNORECASE)
    if m:
        said = m[-1].strip().strip(":").strip()
        if re.fullmatch(r"[A-Ea-e]", said):  # "the answer is C." names the label itself
            return said.upper()
        return next((label for label, text in item.choices if said.lower() == text.lower()), None)
    return None


def score_csqa(output: str, item: Item) -> bool:
    return answer_csqa(output, item) == item.gold


def answer_letter(output: str) -> str | None:
    """The label an answer starts with ("B", " B. bookstore", "(c)"), else None."""
    # upper case, then punctuation or the end of the line: "A dog" / "a bookstore" are no labels
    m = re.match(r"[\s\W]*([A-E])(?:[.):,]|[ \t]*$|[ \t]*\n)", output)
    return m.group(1) if m else None


def answer_csqa_letter(output: str, item: Item) -> str | None:
    return answer_letter(output)


def score_csqa_letter(output: str, item: Item) -> bool:
    return answer_letter(output) == item.gold


def load_gsm8k(path: Path) -> list[Item]:
    items = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        boxed = _last_boxed(d["solution"])
        if boxed is None:
            raise ValueError(f"{path}: a GSM8K solution without \\boxed{{}}: {d['solution'][-80:]!r}")
        items.append(Item("gsm8k", GSM8K_PROMPT.format(question=d["problem"]), boxed))
    return items


def _load_csqa(path: Path, task: str, template: str) -> list[Item]:
    items = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        choices = tuple(zip(d["choices"]["label"], d["choices"]["text"], strict=True))
        listing = "\n".join(f"{label}. {text}" for label, text in choices)
        items.append(
            Item(task, template.format(question=d["question"], choices=listing), d["answerKey"], choices)
        )
    return items


def load_csqa(path: Path) -> list[Item]:
    return _load_csqa(path, "csqa", CSQA_PROMPT)


def load_csqa_letter(path: Path) -> list[Item]:
    return _load_csqa(path, "csqa_letter", CSQA_LETTER_PROMPT)


@dataclass(frozen=True)
class Task:
    name: str
    dev_file: str
    train_file: str
    load: Callable[[Path], list[Item]]
    score: Callable[[str, Item], bool]
    answer: Callable[[str, Item], str | None]  # the answer an output gives (None: none found)


TASKS: dict[str, Task] = {
    "gsm8k": Task(
        "gsm8k",
        "eval/gsm8k_dev.jsonl",
        "router_train/gsm8k_train_cot.jsonl",
        load_gsm8k,
        score_gsm8k,
        answer_gsm8k,
    ),  # fmt: skip
    "csqa": Task(
        "csqa", "eval/csqa_dev.jsonl", "router_train/csqa_train_cot.jsonl", load_csqa, score_csqa, answer_csqa
    ),  # fmt: skip
    "csqa_letter": Task(
        "csqa_letter",
        "eval/csqa_dev.jsonl",
        "router_train/csqa_train_cot.jsonl",
        load_csqa_letter,
        score_csqa_letter,
        answer_csqa_letter,
    ),  # fmt: skip
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownNameError("task", name, list(TASKS))
    return TASKS[name]


def load_train_pairs(data_root: Path, task: str) -> list[tuple[str, str]]:
    """(prompt, reference chain of thought) pairs of a task's router training file."""
    path = data_root / get_task(task).train_file
    if not path.is_file():
        raise FileNotFoundError(f"router training data {path} not found")
    return [(d["prompt"], d["cot"]) for d in map(json.loads, path.read_text().splitlines())]
