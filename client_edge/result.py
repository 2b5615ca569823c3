"""What one edge answer produced: tokens, text, where each token came from, and what the cloud cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal


class TokenSource(str, Enum):
    """Origin of one committed token.

    LOCAL: the edge's own token; the gate did not ask the cloud.
    CLOUD: produced by the cloud (escalation answer, or a verify correction / bonus token).
    VERIFIED: an edge draft token the cloud accepted (speculative mode).
    UNVERIFIED: the gate (or speculative mode) wanted the cloud, the cloud failed or missed its deadline,
    and the edge kept its own token.
    """

    LOCAL = "local"
    CLOUD = "cloud"
    VERIFIED = "verified"
    UNVERIFIED = "unverified"


@dataclass
class CloudUsage:
    """Sums of the router's ``Usage`` over an answer (vLLM's own numbers)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_tokens: int = 0
    completion_tokens: int = 0
    engine_calls: int = 0


@dataclass
class GenerationResult:
    """``token_ids``/``sources`` are the generated tokens only (prompt excluded), one source each.

    ``escalated_positions``: positions where the gate asked for the cloud (speculative mode: drafted
    positions sent for verification). ``cloud_failures``: calls that failed (error or deadline).
    ``unsynced_units``: committed units the cloud did not hold when the answer ended (0 after a good
    final sync). ``token_times_s``: per generated token, the wall time of its round / tokens in it.
    ``cloud_session_id``: the session the answer lives in on the cloud (None if none was opened).
    """

    token_ids: list[int]
    text: str
    sources: list[TokenSource]
    finish_reason: Literal["eos", "length"]
    escalated_positions: int = 0
    cloud_failures: int = 0
    resyncs: int = 0
    unsynced_units: int = 0
    usage: CloudUsage = field(default_factory=CloudUsage)
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    token_times_s: list[float] = field(default_factory=list)
    cloud_session_id: str | None = None

    def count(self, source: TokenSource) -> int:
        return sum(1 for s in self.sources if s is source)

    @property
    def n_unverified(self) -> int:
        return self.count(TokenSource.UNVERIFIED)

    @property
    def n_cloud(self) -> int:
        return self.count(TokenSource.CLOUD)

    @property
    def escalation_rate(self) -> float:
        return self.escalated_positions / len(self.token_ids) if self.token_ids else 0.0
