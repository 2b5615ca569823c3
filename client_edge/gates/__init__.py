"""Escalation gates behind one base class (``Gate``) and a registry that imports them lazily."""

from __future__ import annotations

from typing import Any

from client_edge.errors import UnknownNameError
from client_edge.gates.base import Gate
from client_edge.protocol.registry import LazyRegistry

GATES = LazyRegistry("gate", {
    "top1": "client_edge.gates.confidence:Top1ProbGate",
    "entropy": "client_edge.gates.confidence:EntropyGate",
    "rolling_entropy": "client_edge.gates.rolling_entropy:RollingEntropyGate",
    "mlp": "client_edge.gates.mlp:MLPRouterGate",
    "random": "client_edge.gates.random_gate:RandomGate",
}, UnknownNameError)


def gate_class(name: str) -> type[Gate]:
    return GATES.load(name)


def create_gate(name: str, **kwargs: Any) -> Gate:
    """``create_gate("entropy", threshold=1.2)``; an unknown name raises ``UnknownNameError``."""
    return gate_class(name)(**kwargs)


__all__ = ["GATES", "Gate", "create_gate", "gate_class"]
