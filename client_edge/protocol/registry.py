"""Names that travel between processes (CLI flags, settings, ``additional_config``, request bodies) and the
implementations they stand for: one lazy registry for every extension point.

``REG = LazyRegistry("gate", {"entropy": "client_edge.gates.confidence:EntropyGate"})``;
``REG.load("entropy")`` imports the module on first use; an unknown name raises :class:`UnknownNameError`
listing the valid names. A registry is a read-only ``Mapping[name, "module:attr"]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class UnknownNameError(ValueError):
    """A registry was asked for a name it does not know; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)


class LazyRegistry(Mapping[str, str]):
    """``kind``: what the names are (for error messages); ``targets``: name -> ``"module:attr"``;
    ``error``: the exception class raised for an unknown name (a subclass of :class:`UnknownNameError`)."""

    def __init__(self, kind: str, targets: Mapping[str, str], error: type[UnknownNameError] = UnknownNameError) -> None:
        for name, target in targets.items():
            if target.count(":") != 1:
                raise ValueError(f"{kind} {name!r}: target must be 'module:attr', got {target!r}")
        self.kind = kind
        self._targets = dict(targets)
        self._error = error

    def __getitem__(self, name: str) -> str:
        return self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __or__(self, other: LazyRegistry) -> LazyRegistry:
        return LazyRegistry(self.kind, {**self._targets, **other._targets}, self._error)

    def module_attribute(self, module: str, name: str, public: list[str]) -> Any:
        """The body of a package's PEP 562 ``__getattr__`` that exports these names lazily: the object registered
        under ``name``, else the ``AttributeError`` Python raises for ``module``, listing the ``public`` names."""
        if name in self._targets:
            return self.load(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}; public names: {public}")

    def load(self, name: str) -> Any:
        """The object registered under ``name``, imported now if needed."""
        target = self._targets.get(name)
        if target is None:
            raise self._error(self.kind, name, list(self._targets))
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
