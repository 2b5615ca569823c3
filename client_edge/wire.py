"""The request fields and prefix hashes of one session mode, chosen once per cloud link.

``TokenWire`` puts ids on the wire and hashes with :func:`token_prefix_hash`; ``TextWire`` puts text
and hashes with :func:`text_prefix_hash`. Both hash *incrementally*: the committed prefix only grows
during an answer, so the hasher is advanced over the units committed since the last call and the
digest of every length asked for recently is kept (the base of the next request is the length the
last answer adopted). A length the hasher has passed (a resync to an older checkpoint, rare) is
hashed from scratch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from client_edge.protocol import (
    SamplingSettings,
    SessionMode,
    TextPrefixHasher,
    TokenPrefixHasher,
    text_prefix_hash,
    token_prefix_hash,
)

Units = Sequence[int] | str
Fields = dict[str, object]


class Wire(ABC):
    mode: ClassVar[SessionMode]

    def __init__(self) -> None:
        self._hasher: TokenPrefixHasher | TextPrefixHasher = self._new_hasher()
        self._hashed = 0  # units the hasher has consumed
        self._digests: dict[int, str] = {0: self._hasher.hexdigest()}

    # --- hashing ---------------------------------------------------------------------------------
    @abstractmethod
    def _new_hasher(self) -> TokenPrefixHasher | TextPrefixHasher: ...

    @abstractmethod
    def _hash_from_scratch(self, units: Units) -> str: ...

    def prefix_hash(self, units: Units, length: int | None = None) -> str:
        """Hash of ``units[:length]`` (all of ``units`` by default); ``units`` must extend every prefix
        hashed before (the committed transcript of one answer)."""
        n = len(units) if length is None else length
        if not 0 <= n <= len(units):
            raise ValueError(f"prefix length {n} outside [0, {len(units)}]")
        cached = self._digests.get(n)
        if cached is not None:
            return cached
        if n < self._hashed:
            return self._hash_from_scratch(units[:n])
        self._hasher.update(units[self._hashed : n])  # type: ignore[arg-type]
        self._hashed = n
        digest = self._hasher.hexdigest()
        # keep the digests that a next request can name as its base: the last few lengths
        self._digests = {k: v for k, v in self._digests.items() if k >= n - 4096} | {n: digest}
        return digest

    # --- request fields --------------------------------------------------------------------------
    @abstractmethod
    def prompt(self, units: Units) -> Fields: ...

    @abstractmethod
    def delta(self, new: Units) -> Fields: ...

    @abstractmethod
    def proposal(self, proposal: Units) -> Fields: ...

    @abstractmethod
    def draft(self, draft: Units, sampling: SamplingSettings) -> Fields: ...


class TokenWire(Wire):
    mode = "token"

    def _new_hasher(self) -> TokenPrefixHasher:
        return TokenPrefixHasher()

    def _hash_from_scratch(self, units: Units) -> str:
        return token_prefix_hash(units)  # type: ignore[arg-type]

    def prompt(self, units: Units) -> Fields:
        return {"prompt_token_ids": list(units)}

    def delta(self, new: Units) -> Fields:
        return {"new_token_ids": list(new)}

    def proposal(self, proposal: Units) -> Fields:
        return {"proposal_token_ids": list(proposal)}

    def draft(self, draft: Units, sampling: SamplingSettings) -> Fields:
        d: Fields = {"draft_token_ids": list(draft)}
        if not sampling.greedy:  # the edge drafts greedily: q is a point mass on each token
            d["draft_distributions"] = [{t: 1.0} for t in draft]
        return d


class TextWire(Wire):
    mode = "text"

    def _new_hasher(self) -> TextPrefixHasher:
        return TextPrefixHasher()

    def _hash_from_scratch(self, units: Units) -> str:
        return text_prefix_hash(str(units))

    def prompt(self, units: Units) -> Fields:
        return {"prompt_text": str(units)}

    def delta(self, new: Units) -> Fields:
        return {"new_text": str(new)}

    def proposal(self, proposal: Units) -> Fields:
        return {"proposal_text": str(proposal)}

    def draft(self, draft: Units, sampling: SamplingSettings) -> Fields:
        return {"draft_text": str(draft)}


def make_wire(mode: SessionMode) -> Wire:
    return TokenWire() if mode == "token" else TextWire()
