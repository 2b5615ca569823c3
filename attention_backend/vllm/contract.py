"""What our vLLM adapters rely on in vLLM's source, and a check of it against any vLLM source tree.

Each adapter lists its needs as :class:`Requirement` records (``attention_backend/vllm/requirements.py``,
``server/engine/prefix_cache/vllm_requirements.py``, ``server/launch/vllm_cmd.VLLM_FLAGS``). :func:`check_tree`
reads a vLLM source tree with :mod:`ast` (nothing is imported, so it works on an extracted wheel of any
version) and says, per requirement, where it was found or why not. The adapters run the same check on
the installed vLLM when vLLM loads them (:func:`require_installed`), so an unsupported vLLM stops at
start-up with the version and the missing symbols named, instead of failing somewhere mid-request.
``scripts/vllm_compat_check.py`` runs it over several trees and prints the version matrix.

This module imports no vLLM.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

Kind = Literal["module", "class", "function", "method", "attr", "name", "source", "flag"]


class VllmIncompatible(RuntimeError):
    """The installed vLLM lacks something an adapter needs (the message names the version and symbols)."""


@dataclass(frozen=True)
class Requirement:
    """One thing an adapter relies on.

    ``kind``: ``module`` (``module`` exists), ``class`` / ``function`` / ``name`` (a module-level
    ``name``), ``method`` (``"Class.method"``, found in the class or a vLLM base class), ``attr``
    (``"Class.attr"``: a class-level field, property, or ``self.attr`` assigned in a method), ``source``
    (``"Class.method"`` or ``"function"`` whose body contains ``snippet``, whitespace-insensitive: pins a
    behaviour the adapter relies on), ``flag`` (a ``vllm serve`` / api_server command-line flag).
    ``params``: parameter names the callable must have, in this order (all of them, and nothing else,
    when ``exact``: the adapter's wrapper has a fixed signature).
    ``optional``: the adapter handles absence (``why`` says how); optional requirements sharing a
    ``group`` need at least one member present.
    """

    kind: Kind
    module: str
    name: str = ""
    params: tuple[str, ...] = ()
    exact: bool = False
    snippet: str = ""
    optional: bool = False
    group: str = ""
    why: str = ""

    @property
    def label(self) -> str:
        if self.kind == "flag":
            return self.module
        base = f"{self.module}.{self.name}" if self.name else self.module
        if self.kind == "source":
            return f"{base} contains {self.snippet!r}"
        if self.params:
            return f"{base}({', '.join(self.params)}{'' if self.exact else ', ...'})"
        return base


@dataclass(frozen=True)
class Result:
    requirement: Requirement
    found: bool
    where: str  # "vllm/v1/core/block_pool.py:666" when found, else what was missing

    @property
    def status(self) -> Literal["ok", "absent", "MISSING"]:
        if self.found:
            return "ok"
        return "absent" if self.requirement.optional else "MISSING"


@dataclass(frozen=True)
class Report:
    root: Path
    version: str
    results: tuple[Result, ...]

    @property
    def failures(self) -> list[str]:
        """Required requirements that are missing, and optional groups with no member present."""
        out = [f"{r.requirement.label}: {r.where}" for r in self.results if r.status == "MISSING"]
        groups: dict[str, list[Result]] = {}
        for r in self.results:
            if r.requirement.group:
                groups.setdefault(r.requirement.group, []).append(r)
        for group, members in sorted(groups.items()):
            if not any(m.found for m in members):
                out.append(f"none of group {group!r}: " + "; ".join(m.requirement.label for m in members))
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def found(self, name: str) -> bool:
        """Whether the requirement(s) on ``name`` (e.g. ``"KVCacheBlock.pool"``) hold in this tree: how an
        adapter picks its branch for an optional requirement."""
        matches = [r for r in self.results if r.requirement.name == name]
        if not matches:
            raise KeyError(f"no requirement on {name!r} in this report")
        return all(r.found for r in matches)


# ---- reading a source tree ----


@dataclass(frozen=True)
class _Module:
    rel: str  # path relative to the tree root, for messages
    tree: ast.Module
    text: str


def _parse(path: Path) -> _Module | None:
    if not path.is_file():
        return None
    stat = path.stat()
    return _parse_file(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _parse_file(path: Path, mtime_ns: int, size: int) -> _Module:  # keyed on the file's state
    text = path.read_text(encoding="utf-8")
    return _Module(rel="", tree=ast.parse(text), text=text)


def _module(root: Path, dotted: str) -> _Module | None:
    rel = Path(*dotted.split("."))
    for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
        parsed = _parse(root / candidate)
        if parsed is not None:
            return _Module(rel=str(candidate), tree=parsed.tree, text=parsed.text)
    return None


def _top_level(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, including those nested in if / try blocks (TYPE_CHECKING, fallbacks)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *[h.body for h in stmt.handlers]):
                yield from _top_level(block)


def _defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    return []


def _find_top(mod: _Module, name: str) -> ast.stmt | None:
    for stmt in _top_level(mod.tree.body):
        if name in _defined_names(stmt):
            return stmt
    return None


def _resolve_import(mod_name: str, is_package: bool, stmt: ast.ImportFrom) -> str:
    if not stmt.level:
        return stmt.module or ""
    parts = mod_name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (stmt.level - 1)] if stmt.level > 1 else base
    return ".".join(base + ([stmt.module] if stmt.module else []))


def _find_class(root: Path, dotted: str, name: str, depth: int = 0) -> tuple[str, str, ast.ClassDef] | None:
    """(module, file, ClassDef) for ``name`` as seen from module ``dotted``, following re-exports."""
    mod = _module(root, dotted)
    if mod is None or depth > 8:
        return None
    stmt = _find_top(mod, name)
    if isinstance(stmt, ast.ClassDef):
        return dotted, mod.rel, stmt
    if isinstance(stmt, ast.ImportFrom):
        source = _resolve_import(dotted, mod.rel.endswith("__init__.py"), stmt)
        original = next(a.name for a in stmt.names if (a.asname or a.name) == name)
        if source.startswith("vllm"):
            return _find_class(root, source, original, depth + 1)
    return None


def _mro(root: Path, dotted: str, name: str) -> list[tuple[str, ast.ClassDef]]:
    """The class and its vLLM base classes (depth first), as (file, ClassDef)."""
    found = _find_class(root, dotted, name)
    if found is None:
        return []
    module, rel, cls = found
    chain = [(rel, cls)]
    for base in cls.bases:
        if isinstance(base, ast.Subscript):  # Generic[T]-style bases
            base = base.value
        base_name = (
            base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        )
        if base_name and base_name != name:
            chain += _mro(root, module, base_name)
    return chain


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args)]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return names


def _params_match(req: Requirement, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """None when the signature fits, else what differs."""
    have = _params(fn)
    if req.exact:
        return None if have == list(req.params) else f"signature is ({', '.join(have)})"
    it = iter(have)
    if all(p in it for p in req.params):  # in order (consumes the iterator)
        return None
    return f"signature is ({', '.join(have)})"


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {s.name: s for s in cls.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}


def _attr_line(cls: ast.ClassDef, attr: str) -> int | None:
    for stmt in cls.body:
        if attr in _defined_names(stmt) and not isinstance(stmt, ast.ClassDef):
            return stmt.lineno
    for fn in _methods(cls).values():
        for node in ast.walk(fn):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign | ast.AugAssign)
                else []
            )
            for t in targets:
                if (
                    isinstance(t, ast.Attribute)
                    and t.attr == attr
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                ):
                    return node.lineno
    return None


def _normalise(code: str) -> str:
    return re.sub(r"\s+", "", code)


def _check_one(root: Path, req: Requirement) -> Result:  # noqa: C901 - one branch per kind reads best
    if req.kind == "flag":
        return _check_flag(root, req)
    mod = _module(root, req.module)
    if mod is None:
        return Result(req, False, f"no module {req.module}")
    if req.kind == "module":
        return Result(req, True, f"{mod.rel}:1")
    owner, _, member = req.name.partition(".")
    if not member:  # module level: class / function / name / source of a function
        stmt = _find_top(mod, owner)
        if stmt is None:
            return Result(req, False, f"{mod.rel}: no {owner}")
        if req.kind == "class" and not isinstance(stmt, ast.ClassDef | ast.ImportFrom):
            return Result(req, False, f"{mod.rel}:{stmt.lineno}: {owner} is not a class")
        if req.kind in ("function", "source"):
            if isinstance(stmt, ast.ImportFrom):
                return Result(req, False, f"{mod.rel}:{stmt.lineno}: {owner} is re-exported; name its module")
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                return Result(req, False, f"{mod.rel}:{stmt.lineno}: {owner} is not a function")
            return _check_callable(req, f"{mod.rel}", stmt, mod.text)
        return Result(req, True, f"{mod.rel}:{stmt.lineno}")
    chain = _mro(root, req.module, owner)
    if not chain:
        return Result(req, False, f"{mod.rel}: no class {owner}")
    for rel, cls in chain:
        if req.kind in ("method", "source"):
            fn = _methods(cls).get(member)
            if fn is not None:
                return _check_callable(req, rel, fn, _parse(root / rel).text)
        elif req.kind == "attr":
            line = _attr_line(cls, member)
            if line is not None:
                return Result(req, True, f"{rel}:{line}")
    searched = ", ".join(f"{c.name} ({rel}:{c.lineno})" for rel, c in chain)
    return Result(req, False, f"no {member} in {searched}")


def _check_callable(
    req: Requirement, rel: str, fn: ast.FunctionDef | ast.AsyncFunctionDef, text: str
) -> Result:
    where = f"{rel}:{fn.lineno}"
    if req.kind == "source":
        body = ast.get_source_segment(text, fn) or ""
        if _normalise(req.snippet) in _normalise(body):
            return Result(req, True, where)
        return Result(req, False, f"{where}: body does not contain {req.snippet!r}")
    differs = _params_match(req, fn)
    return Result(req, differs is None, where if differs is None else f"{where}: {differs}")


_ARG_CLASSES = {"EngineArgs", "BaseFrontendArgs", "FrontendArgs"}


def _check_flag(root: Path, req: Requirement) -> Result:
    """A flag exists when its dataclass field (``EngineArgs`` / ``[Base]FrontendArgs``, whose fields
    vLLM turns into flags) or the literal ``"--flag"`` is in ``engine/arg_utils.py`` or an entrypoint
    ``cli_args.py`` (the file moved between versions, so all of them are searched)."""
    flag = req.module
    field = flag.removeprefix("--").replace("-", "_")
    files = [root / "vllm/engine/arg_utils.py", *sorted((root / "vllm/entrypoints").rglob("cli_args.py"))]
    for path in files:
        parsed = _parse(path)
        if parsed is None:
            continue
        text, rel = parsed.text, str(path.relative_to(root))
        literal = f'"{flag}"'
        if literal in text:
            return Result(req, True, f"{rel}:{text[: text.index(literal)].count(chr(10)) + 1}")
        for node in parsed.tree.body:
            if isinstance(node, ast.ClassDef) and node.name in _ARG_CLASSES:
                line = _attr_line(node, field)
                if line is not None:
                    return Result(req, True, f"{rel}:{line} ({node.name}.{field})")
    return Result(req, False, "not in engine/arg_utils.py nor any entrypoints/**/cli_args.py")


def tree_version(root: Path) -> str:
    """The version in ``vllm/_version.py`` (``__version__ = version = '0.32.0'``), else ``unknown``."""
    path = root / "vllm" / "_version.py"
    if path.is_file():
        match = re.search(r"__version__\s*=\s*(?:version\s*=\s*)?['\"]([^'\"]+)['\"]", path.read_text())
        if match:
            return match.group(1)
    return "unknown"


def check_tree(root: Path, requirements: Iterable[Requirement]) -> Report:
    """Check ``requirements`` against the vLLM source tree under ``root`` (the folder holding ``vllm/``)."""
    root = Path(root)
    if not (root / "vllm" / "__init__.py").is_file():
        raise FileNotFoundError(f"expected a vLLM source tree (ROOT/vllm/__init__.py), got {root}")
    return Report(root, tree_version(root), tuple(_check_one(root, r) for r in requirements))


def require_installed(requirements: Iterable[Requirement], component: str) -> Report:
    """Check the installed vLLM; raise :class:`VllmIncompatible` naming the version and every miss."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise VllmIncompatible(f"{component}: vLLM is not installed")
    root = Path(next(iter(spec.submodule_search_locations))).parent
    report = check_tree(root, requirements)
    if not report.ok:
        lines = "\n  ".join(report.failures)
        raise VllmIncompatible(
            f"{component} does not support the installed vLLM {report.version} ({root}); "
            f"supported: 0.26 - 0.33 (docs/vllm_versions.md). Missing:\n  {lines}"
        )
    return report
