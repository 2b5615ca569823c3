"""Compose-file variable interpolation and ``.env`` parsing, with Docker Compose's semantics.

Supported, as in the Compose specification: ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (unset or empty),
``${VAR-default}`` (unset), ``${VAR:?message}`` / ``${VAR?message}`` (required: error), ``${VAR:+alt}`` /
``${VAR+alt}``, ``$$`` for a literal ``$``, and nested expressions in defaults (``${A:-${B}}``). Values in the
process environment win over the ``.env`` file, as in ``docker compose``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A required variable is unset (or empty), or an expression is malformed; says where."""


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefix, ``#`` comments, single or double quotes allowed)."""
    values: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            raise InterpolationError(f"{path}:{n}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _closing_brace(text: str, start: int, where: str) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"{where}: unclosed '${{' in {text!r}")


def interpolate(text: str, env: Mapping[str, str], where: str = "value") -> str:
    """Expand every variable expression in ``text`` from ``env``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2, where)
            out.append(_expand(text[i + 2 : end], env, where))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if m is None:
                raise InterpolationError(f"{where}: invalid '$' in {text!r} (write '$$' for a literal '$')")
            out.append(env.get(m.group(0), ""))
            i = m.end()
    return "".join(out)


def _expand(expr: str, env: Mapping[str, str], where: str) -> str:
    m = _NAME.match(expr)
    if m is None:
        raise InterpolationError(f"{where}: invalid variable expression '${{{expr}}}'")
    name, rest = m.group(0), expr[m.end() :]
    if not rest:
        return env.get(name, "")
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"{where}: invalid variable expression '${{{expr}}}'")
    arg = rest[len(op) :]
    value = env.get(name)
    missing = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return interpolate(arg, env, where) if missing else str(value)
    if op in (":+", "+"):
        return "" if missing else interpolate(arg, env, where)
    if missing:
        raise InterpolationError(
            f"{where}: required variable {name} is missing a value: {interpolate(arg, env, where)}"
        )
    return str(value)


def variables(text: str) -> set[str]:
    """Names of every variable ``text`` refers to (including inside defaults); ``$$`` is skipped."""
    names: set[str] = set()
    for m in re.finditer(r"\$\$|\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
        if m.group(1):
            names.add(m.group(1))
    return names


def interpolate_tree(node: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Interpolate every string value of a parsed YAML tree (keys are left alone, as in Compose)."""
    if isinstance(node, str):
        return interpolate(node, env, where or "value")
    if isinstance(node, list):
        return [interpolate_tree(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    return node
