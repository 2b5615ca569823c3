"""Clients of the inference engine (one vLLM OpenAI server per replica) behind one small contract."""

from router.engine.base import (
    EngineClient,
    EngineError,
    EngineToken,
    EngineUnavailableError,
    EngineUsage,
    GenerateCall,
    GenerateResult,
    ModelInfo,
)

__all__ = [
    "EngineClient",
    "EngineError",
    "EngineToken",
    "EngineUnavailableError",
    "EngineUsage",
    "GenerateCall",
    "GenerateResult",
    "ModelInfo",
]
