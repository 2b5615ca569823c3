"""The vLLM contract checker on small hand-made source trees (no vLLM needed): each kind of requirement
is found where it is, and reported missing, with the reason, where it is not."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from attention_backend.vllm.contract import Requirement, VllmIncompatible, check_tree, require_installed


def _tree(root: Path, files: dict[str, str], version: str = "0.99.0") -> Path:
    files = {"vllm/__init__.py": "", "vllm/_version.py": f"__version__ = version = '{version}'\n", **files}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


BASE = """
    from dataclasses import dataclass

    class Base:
        def inherited(self, block, *, flag=False):
            self.from_base = 1

    @dataclass
    class Meta:
        causal: bool = True
"""
POOL = """
    from typing import TYPE_CHECKING
    from vllm.core.base import Base as Renamed, Meta

    if TYPE_CHECKING:
        current: int

    class Pool(Renamed):
        LIMIT = 3

        def __init__(self, num_blocks):
            self.queue = []

        @property
        def size(self):
            return 0

        def get(self, num_blocks):
            ret = self.queue.pop(
                num_blocks)
            return ret

    def helper(a, b, c=1):
        return a
"""
ARGS = """
    from dataclasses import dataclass

    @dataclass
    class EngineArgs:
        block_size: int = 16

    def add_cli_args(parser):
        parser.add_argument("--enforce-eager")
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _tree(
        tmp_path,
        {"vllm/core/__init__.py": "", "vllm/core/base.py": BASE, "vllm/core/pool.py": POOL,
         "vllm/engine/arg_utils.py": ARGS},
    )  # fmt: skip


def _one(tree: Path, req: Requirement) -> tuple[bool, str]:
    (result,) = check_tree(tree, [req]).results
    return result.found, result.where


@pytest.mark.parametrize(
    "req",
    [
        Requirement("module", "vllm.core.pool"),
        Requirement("class", "vllm.core.pool", "Pool"),
        Requirement("class", "vllm.core.pool", "Meta"),  # re-exported
        Requirement("name", "vllm.core.pool", "current"),  # annotated under TYPE_CHECKING
        Requirement("function", "vllm.core.pool", "helper", ("a", "c")),
        Requirement("function", "vllm.core.pool", "helper", ("a", "b", "c"), exact=True),
        Requirement("method", "vllm.core.pool", "Pool.get", ("self", "num_blocks"), exact=True),
        Requirement(
            "method", "vllm.core.pool", "Pool.inherited", ("self", "block", "flag")
        ),  # via renamed base
        Requirement("attr", "vllm.core.pool", "Pool.queue"),  # self.queue in __init__
        Requirement("attr", "vllm.core.pool", "Pool.from_base"),  # self.* in a base method
        Requirement("attr", "vllm.core.pool", "Pool.size"),  # property
        Requirement("attr", "vllm.core.pool", "Pool.LIMIT"),
        Requirement("attr", "vllm.core.base", "Meta.causal"),  # dataclass field
        Requirement(
            "source", "vllm.core.pool", "Pool.get", snippet="self.queue.pop(num_blocks)"
        ),  # across lines
        Requirement("source", "vllm.core.pool", "helper", snippet="return a"),
        Requirement("flag", "--block-size"),  # EngineArgs field
        Requirement("flag", "--enforce-eager"),  # literal
    ],
    ids=lambda r: f"{r.kind}:{r.name or r.module}",
)
def test_present_requirements_are_found_with_their_line(tree: Path, req: Requirement) -> None:
    found, where = _one(tree, req)
    assert found, where
    assert ".py:" in where


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (Requirement("module", "vllm.core.gone"), "no module vllm.core.gone"),
        (Requirement("class", "vllm.core.pool", "helper"), "helper is not a class"),
        (Requirement("function", "vllm.core.pool", "helper", ("a", "d")), "signature is (a, b, c)"),
        (Requirement("function", "vllm.core.pool", "helper", ("c", "a")), "signature is (a, b, c)"),  # order
        (
            Requirement("function", "vllm.core.pool", "helper", ("a", "b"), exact=True),
            "signature is (a, b, c)",
        ),
        (Requirement("method", "vllm.core.pool", "Pool.get", ("self", "n"), exact=True), "signature is"),
        (Requirement("method", "vllm.core.pool", "Pool.put"), "no put in Pool"),
        (Requirement("method", "vllm.core.pool", "Nope.get"), "no class Nope"),
        (
            Requirement("attr", "vllm.core.pool", "Pool.missing"),
            "no missing in Pool (vllm/core/pool.py:8), Base",
        ),
        (
            Requirement("source", "vllm.core.pool", "Pool.get", snippet="popleft"),
            "does not contain 'popleft'",
        ),
        (Requirement("flag", "--kv-cache-memory-bytes"), "not in engine/arg_utils.py"),
    ],
    ids=lambda x: x.kind if isinstance(x, Requirement) else "",
)
def test_missing_requirements_say_what_is_missing(tree: Path, req: Requirement, reason: str) -> None:
    found, where = _one(tree, req)
    assert not found
    assert reason in where


def test_report_fails_on_required_and_on_empty_groups_only(tree: Path) -> None:
    reqs = [
        Requirement("method", "vllm.core.pool", "Pool.get"),
        Requirement("method", "vllm.core.pool", "Pool.unpin", optional=True),  # absent, alone: fine
        Requirement("attr", "vllm.core.pool", "Pool.isa", optional=True, group="isa"),
        Requirement("attr", "vllm.core.pool", "Pool.queue", optional=True, group="isa"),  # one member present
    ]
    report = check_tree(tree, reqs)
    assert report.version == "0.99.0"
    assert report.ok, report.failures
    assert [r.status for r in report.results] == ["ok", "absent", "absent", "ok"]
    assert report.found("Pool.get") and not report.found("Pool.unpin")
    with pytest.raises(KeyError):
        report.found("Pool.never_listed")

    report = check_tree(tree, [*reqs[:2], reqs[2], Requirement("method", "vllm.core.pool", "Pool.drop")])
    assert not report.ok
    assert any("Pool.drop" in f for f in report.failures)
    assert any("none of group 'isa'" in f for f in report.failures)


def test_not_a_vllm_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ROOT/vllm/__init__.py"):
        check_tree(tmp_path, [])


def test_require_installed_names_version_and_symbol(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tree))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)  # an imported vLLM would answer find_spec
    report = require_installed([Requirement("method", "vllm.core.pool", "Pool.get")], "xedge test")
    assert report.version == "0.99.0"
    with pytest.raises(
        VllmIncompatible, match=r"xedge test does not support the installed vLLM 0\.99\.0"
    ) as err:
        require_installed([Requirement("method", "vllm.core.pool", "Pool.put")], "xedge test")
    assert "vllm.core.pool.Pool.put" in str(err.value)
