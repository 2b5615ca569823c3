"""``EdgeSession``: the edge's generation loop (per-token escalation or speculative verify).

Invariants the loop keeps:
- the runner has consumed exactly ``prompt + generated`` (drafts are rolled back before commit), and
  ``step`` is its output at the last committed token;
- a committed token is never taken back and the answer always runs to EOS or ``max_new_tokens``: when a
  cloud call fails or misses its deadline the edge keeps its own token(s), marks them UNVERIFIED, and
  the next successful call (or the final sync) sends them to the cloud;
- after a failure the edge does not call the cloud for the next ``failure_cooldown`` rounds, so a dead
  cloud costs at most one deadline per cooldown window.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Literal

from client_edge._base_client import RequestOptions
from client_edge.bridge import Bridge, make_bridge
from client_edge.client import EdgeClient
from client_edge.cloud_link import CloudLink, Link, LinkFactory
from client_edge.errors import APIError, CloudProtocolError, HiddenStatesUnavailableError
from client_edge.gates.base import Gate
from client_edge.protocol import SamplingSettings, SessionMode
from client_edge.result import CloudUsage, GenerationResult, TokenSource
from client_edge.runner.base import ModelRunner, StepOutput


@dataclass(frozen=True)
class SessionConfig:
    """``strategy``: ``escalate`` (ask the cloud for ``escalate_k`` tokens where the gate fires) or
    ``speculative`` (draft ``draft_len`` tokens, verify them in one round trip). ``mode``: ``token``
    when edge and cloud share a tokenizer, else ``text``. ``cloud_deadline_s`` bounds each cloud call,
    retries included. ``delete_cloud_session``: delete the answer's cloud session once it is done (after
    the final sync); by default the answer stays on the cloud under ``GenerationResult.cloud_session_id``
    until the caller deletes it (``EdgeClient.delete_session``) or the router's session TTL expires.
    ``cloud_sampling``: how the cloud samples its tokens (default greedy). With temperature > 0 a
    speculative round is verified with the speculative-sampling rule (the edge's greedy draft is a point
    mass), so the answer's cloud-decided tokens follow the cloud's sampling distribution."""

    strategy: Literal["escalate", "speculative"] = "escalate"
    mode: SessionMode = "token"
    max_new_tokens: int = 256
    escalate_k: int = 1
    draft_len: int = 4
    cloud_deadline_s: float = 5.0
    max_retries: int = 1
    failure_cooldown: int = 16
    sync_at_end: bool = True
    prefill_prompt: bool = True
    delete_cloud_session: bool = False
    cloud_sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "escalate_k", "draft_len", "max_retries", "failure_cooldown"):
            value = getattr(self, name)  # a float or NaN here would pass every range check below
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if self.cloud_deadline_s is not None and not self.cloud_deadline_s > 0:  # NaN too
            raise ValueError(f"cloud_deadline_s must be > 0, got {self.cloud_deadline_s}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 1 <= self.escalate_k <= 256:
            raise ValueError(f"escalate_k must be in [1, 256], got {self.escalate_k}")
        if not 1 <= self.draft_len <= 64:
            raise ValueError(f"draft_len must be in [1, 64], got {self.draft_len}")
        if self.failure_cooldown < 0:
            raise ValueError(f"failure_cooldown must be >= 0, got {self.failure_cooldown}")


class EdgeSession:
    """Generates one answer at a time with ``runner``; asks the cloud through ``client`` (None = never)."""

    def __init__(
        self,
        runner: ModelRunner,
        gate: Gate,
        client: EdgeClient | None,
        config: SessionConfig = SessionConfig(),
        link_factory: LinkFactory | None = None,
    ) -> None:
        """``link_factory`` replaces the stateful ``CloudLink`` over ``client`` (give one or neither)."""
        if client is not None and link_factory is not None:
            raise ValueError("give client= or link_factory=, not both")
        if gate.needs_hidden_states and not runner.provides_hidden_states:
            raise HiddenStatesUnavailableError(
                f"the {gate.name!r} gate reads hidden states and {type(runner).__name__} does not expose "
                "them: use a logits-only gate (entropy, top1, rolling_entropy, random) or the transformers runner"
            )
        self.runner = runner
        self.gate = gate
        self.client = client
        self.config = config
        self.link_factory = link_factory

    def generate(self, prompt_ids: list[int], cloud_prompt_text: str | None = None) -> GenerationResult:
        """Answer ``prompt_ids`` (edge token ids, chat template applied). In text mode the cloud's prompt
        is ``cloud_prompt_text`` (default: the decoded edge prompt)."""
        stream = self.stream(prompt_ids, cloud_prompt_text)
        for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def stream(self, prompt_ids: list[int], cloud_prompt_text: str | None = None) -> AnswerStream:
        """Like ``generate``, but yields each round's committed tokens as ``(ids, sources)`` as soon as
        they are committed; ``result`` holds the ``GenerationResult`` once the iteration ends."""
        if isinstance(prompt_ids, str | bytes) or not all(
            isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in prompt_ids
        ):
            raise TypeError(f"prompt_ids must be a list of token ids (ints), got {type(prompt_ids).__name__}")
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise ValueError("prompt_ids must not be empty")
        bad = [t for t in prompt_ids if not 0 <= t < self.runner.vocab_size]
        if bad:  # else the runner fails deep inside (torch: "index out of range") or the cloud refuses them
            raise ValueError(f"prompt_ids {bad[:5]} outside the local model's vocabulary [0, {self.runner.vocab_size})")
        self.runner.check_fits(
            len(prompt_ids) + self.config.max_new_tokens,
            f"the prompt ({len(prompt_ids)} tokens) plus max_new_tokens ({self.config.max_new_tokens})",
        )
        return AnswerStream(_Run(self, prompt_ids, cloud_prompt_text).execute())


Committed = tuple[list[int], list[TokenSource]]


class AnswerStream:
    """Iterator over one answer's commits; ``result`` is set when it is exhausted. ``close()`` stops
    early: the answer ends there and nothing more is sent to the cloud."""

    def __init__(self, rounds: Generator[Committed, None, GenerationResult]) -> None:
        self._rounds = rounds
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[Committed]:
        return self

    def __next__(self) -> Committed:
        try:
            return next(self._rounds)
        except StopIteration as done:
            if self.result is None:  # a finished generator stops again with None: keep the answer
                self.result = done.value
            raise StopIteration from None

    def close(self) -> None:
        self._rounds.close()


class _Run:
    """State of one ``generate`` call."""

    def __init__(self, s: EdgeSession, prompt_ids: list[int], cloud_prompt_text: str | None) -> None:
        self.s, self.cfg, self.runner = s, s.config, s.runner
        self.bridge: Bridge = make_bridge(self.cfg.mode, s.runner, prompt_ids, cloud_prompt_text)
        self.gen: list[int] = []
        self.sources: list[TokenSource] = []
        self.times: list[float] = []
        self.escalated = self.failures = 0
        self.cooldown = 0
        self.link: Link | None = None
        opts = RequestOptions(deadline_s=self.cfg.cloud_deadline_s, max_retries=self.cfg.max_retries)
        fingerprint = s.runner.tokenizer_fingerprint
        if s.link_factory is not None:
            self.link = s.link_factory(self.cfg.mode, fingerprint, opts)
        elif s.client is not None:
            self.link = CloudLink(s.client, self.cfg.mode, fingerprint, self.cfg.cloud_sampling, opts)
        self.traffic0 = self.link.traffic() if self.link is not None else None
        self.step: StepOutput = self.runner.prefill(prompt_ids)
        self.prompt_len = len(prompt_ids)
        self.done: Literal["eos", "length"] | None = None

    # --- bookkeeping -----------------------------------------------------------------------------
    @property
    def left(self) -> int:
        return self.cfg.max_new_tokens - len(self.gen)

    def _commit(self, ids: list[int], sources: list[TokenSource]) -> None:
        """Append ``ids`` (already consumed by the runner, except a final EOS) to the answer."""
        ids, sources = ids[: self.left], sources[: self.left]
        for tok, src in zip(ids, sources, strict=True):
            self.gen.append(tok)
            self.sources.append(src)
            if tok in self.runner.eos_token_ids:
                self.done = "eos"
                break
        if self.done is None and self.left <= 0:
            self.done = "length"

    def _feed(self, ids: list[int]) -> None:
        """Let the runner consume committed ids that it has not seen (no EOS: the answer ends there)."""
        ids = [t for t in ids if t not in self.runner.eos_token_ids]
        if ids and self.done is None:
            self.step = self.runner.append(ids)

    def _cloud_ok(self) -> bool:
        if self.link is None:
            return False
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        return True

    def _cloud_ids(self, ids: list[int]) -> list[int]:
        """``ids`` from a cloud answer, checked before any is committed: the runner cannot consume an id
        outside its vocabulary, and a committed token is never taken back."""
        bad = [t for t in ids if not 0 <= t < self.runner.vocab_size]
        if bad:
            raise CloudProtocolError(f"cloud answered token ids {bad[:5]} outside [0, {self.runner.vocab_size})")
        return ids

    def _failed(self) -> None:
        self.failures += 1
        self.cooldown = self.cfg.failure_cooldown

    # --- strategies ------------------------------------------------------------------------------
    def execute(self) -> Generator[Committed, None, GenerationResult]:
        self.s.gate.reset()
        if self.link is not None and self.cfg.prefill_prompt:
            try:
                self.link.open(self.bridge.units(self.gen), prefill=True)
            except APIError:
                self._failed()
        round_ = self._speculative_round if self.cfg.strategy == "speculative" else self._escalation_round
        while self.done is None:
            t0, n0 = time.perf_counter(), len(self.gen)
            round_()
            # a round's wall time (cloud call and the edge's forward over what it committed) per token
            n = len(self.gen) - n0
            if n:
                self.times.extend([(time.perf_counter() - t0) / n] * n)
                yield self.gen[n0:], self.sources[n0:]
        return self._finish()

    def _escalation_round(self) -> None:
        local = self.step.greedy_token
        if not self.s.gate.decide(self.step):
            self._commit([local], [TokenSource.LOCAL])
            self._feed(self.gen[-1:])
            return
        self.escalated += 1
        if self._cloud_ok():
            assert self.link is not None
            try:
                resp = self.link.escalate(
                    self.bridge.units(self.gen),
                    min(self.cfg.escalate_k, self.left),
                    self.bridge.proposal([local], self.gen),
                )
                ids = self._cloud_ids(self.bridge.cloud_ids(resp.tokens, resp.text, self.gen))
                if ids:
                    n0 = len(self.gen)
                    self._commit(ids, [TokenSource.CLOUD] * len(ids))
                    self._feed(self.gen[n0:])
                if self.bridge.cloud_ended(resp.finish_reason) and self.done is None:
                    self.done = "eos"  # the cloud ended the answer with an EOS that has no id here
                if ids or self.done is not None:
                    return
                # the cloud produced nothing (context full): keep the local token, it was not verified
            except APIError:
                self._failed()
        self._commit([local], [TokenSource.UNVERIFIED])
        self._feed(self.gen[-1:])

    def _speculative_round(self) -> None:
        n0 = len(self.gen)
        try:
            self._speculate()
        finally:  # every token a round commits was sent for verification (or was meant to be)
            self.escalated += len(self.gen) - n0

    def _speculate(self) -> None:
        base = self.runner.length
        draft: list[int] = []
        steps: list[StepOutput] = []  # steps[i]: the runner's output after consuming draft[i]
        step = self.step
        for _ in range(min(self.cfg.draft_len, self.left)):
            draft.append(step.greedy_token)
            if draft[-1] in self.runner.eos_token_ids:
                break
            step = self.runner.append(draft[-1:])
            steps.append(step)
        if self._cloud_ok():
            assert self.link is not None
            try:
                resp = self.link.verify(self.bridge.units(self.gen), self.bridge.proposal(draft, self.gen))
                accepted, extra = self.bridge.verified_ids(draft, resp, self.gen)
                extra = self._cloud_ids(extra)
            except APIError:
                self._failed()
            else:
                cloud_ended = self.bridge.cloud_ended(resp.finish_reason)
                if accepted == 0 and not extra and not cloud_ended:  # no correction: the cloud's context is full
                    self.runner.truncate(base)
                    self.done = "length"
                    return
                if self.runner.length > base + accepted:
                    self.runner.truncate(base + accepted)
                self.step = steps[accepted - 1] if 0 < accepted <= len(steps) else self.step
                n0 = len(self.gen)
                srcs = [TokenSource.VERIFIED] * accepted + [TokenSource.CLOUD] * len(extra)
                self._commit(draft[:accepted] + extra, srcs)
                self._feed(self.gen[n0 + accepted :])
                if cloud_ended and self.done is None:
                    self.done = "eos"
                return
        # the cloud failed or was skipped: the drafts stand, unverified; the runner already holds them
        if steps:
            self.step = steps[-1]
        self._commit(draft, [TokenSource.UNVERIFIED] * len(draft))

    def _finish(self) -> GenerationResult:
        unsynced = 0
        if self.link is not None:
            units = self.bridge.units(self.gen)
            if self.cfg.sync_at_end and self.cooldown == 0:
                try:
                    self.link.sync(units, prefill=False)
                except APIError:
                    self.failures += 1
            unsynced = len(units) - self.link.synced if self.link.session_id is not None else len(units)
        traffic = (
            self.link.traffic().since(self.traffic0) if self.link is not None and self.traffic0 else None
        )
        if self.link is not None and self.cfg.delete_cloud_session:
            try:
                self.link.close()
            except APIError:  # the session then lives until the router's TTL; the answer is unaffected
                self.failures += 1
        return GenerationResult(
            token_ids=self.gen,
            text=self.runner.decode(self.gen),
            sources=self.sources,
            finish_reason=self.done or "length",
            escalated_positions=self.escalated,
            cloud_failures=self.failures,
            resyncs=self.link.resyncs if self.link is not None else 0,
            unsynced_units=unsynced,
            usage=self.link.usage if self.link is not None else CloudUsage(),
            round_trips=traffic.round_trips if traffic else 0,
            bytes_sent=traffic.bytes_sent if traffic else 0,
            bytes_received=traffic.bytes_received if traffic else 0,
            token_times_s=self.times,
            cloud_session_id=self.link.session_id if self.link is not None else None,
        )
