"""vLLM adapter: the logits processor that runs the router's sampling verify inside vLLM.

Loaded by vLLM through ``--logits-processors server.engine.verify.vllm_adapter:SpeculativeVerifyProcessor``
(``server/launch/vllm_cmd.py`` adds it unless ``StackSettings.sampling_verify`` is off) in the process that
samples; not an always-on entry point, because vLLM 0.26+ leaves its V2 model runner for V1 whenever any
custom logits processor is configured. It does nothing for requests without the ``xedge_verify`` extra arg (``vllm_xargs`` over HTTP).
For a request with a :class:`client_edge.protocol.verify_spec.VerifySpec` it sees, at every decode step, the
request's full-vocabulary logits before vLLM's penalties, temperature and top-k/top-p; it computes the
distribution vLLM would sample from (temperature, then vLLM's own ``apply_top_k_top_p``), applies the
speculative-sampling rule (:mod:`server.engine.verify.rule`) and forces the outcome by masking every other
token, so vLLM's sampler can only emit it. The steps run from the committed prefix, which vLLM's prefix
cache serves: a verify computes the draft positions only, never the prefix again.

The step is ``len(output_token_ids)`` (vLLM's live list, placeholders included under async scheduling),
as in vLLM's own min-tokens processor. vLLM also runs the sampler on a partial prefill chunk and drops
that sample; such a pass leaves the step unchanged, so a decision is final only once the step advances.

Refused (HTTP 400 from vLLM, via ``validate_params``): penalties and min_p with a spec (they act after
this processor in vLLM's sampler, so the forced choice could not account for them), and malformed specs
(:func:`client_edge.protocol.verify_spec.decode` is strict about types and sizes).

A spec naming a token id outside the logits row (the vocabulary, known only here, not at admission) is
dropped before it can index the logits (an IndexError would kill vLLM's EngineCore for every tenant):
the request runs as a plain sample, ``rejected_specs`` counts it and a warning is logged. The router
never sends such a spec (it checks ids against the vocabulary and refuses clients' ``xedge_*`` keys).
"""

from __future__ import annotations

import logging

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

from attention_backend.vllm.contract import require_installed
from client_edge.protocol.verify_spec import XARG, ForceSpec, SpecError, VerifySpec, decode
from server.engine.verify.rule import speculative_step
from server.engine.verify.vllm_requirements import REQUIREMENTS

log = logging.getLogger("xedge.verify")


def _spec_of(params: SamplingParams) -> VerifySpec | ForceSpec | None:
    raw = (params.extra_args or {}).get(XARG)
    return None if raw is None else decode(str(raw))


class _Request:
    """One request's verify state; ``out`` is vLLM's live list of the request's output tokens."""

    def __init__(self, spec: VerifySpec | ForceSpec, params: SamplingParams, out: list[int], device: torch.device):
        self.spec = spec
        self.max_id = spec.max_token_id()
        self.out = out
        self.temperature = params.temperature
        self.top_k = params.top_k if params.top_k and params.top_k > 0 else None
        self.top_p = params.top_p if params.top_p < 1.0 else None
        self.rejected_at: int | None = None
        self.generator: torch.Generator | None = None
        if isinstance(spec, VerifySpec):
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(spec.seed)

    def target_probs(self, row: torch.Tensor) -> torch.Tensor:
        """What vLLM's sampler would sample this row from (no penalties / min_p: refused with a spec)."""
        logits = row.to(torch.float32).unsqueeze(0) / self.temperature
        k = None if self.top_k is None else torch.tensor([self.top_k], device=row.device)
        p = None if self.top_p is None else torch.tensor([self.top_p], device=row.device, dtype=torch.float32)
        return apply_top_k_top_p(logits, k, p).softmax(dim=-1)[0]

    def choose(self, row: torch.Tensor) -> int | None:
        """The token to force at this step, or None to let vLLM sample."""
        step = len(self.out)
        spec = self.spec
        if isinstance(spec, ForceSpec):
            return spec.tokens[step] if step < len(spec.tokens) else None
        if self.rejected_at is not None and self.rejected_at < step:
            return spec.stop_token if step == self.rejected_at + 1 else None
        # A decision already taken at this very step came from a pass whose sample vLLM discarded (a
        # partial prefill chunk: its logits are not this position's), so decide again on these logits.
        self.rejected_at = None
        if step >= len(spec.draft):
            return None  # the bonus token after a fully kept draft: vLLM's own sample
        assert self.generator is not None
        token, kept = speculative_step(self.target_probs(row), spec.draft[step], spec.dists[step], self.generator)
        if not kept:
            self.rejected_at = step
        return token


class SpeculativeVerifyProcessor(LogitsProcessor):
    """See the module docstring."""

    def __init__(self, vllm_config: object, device: torch.device, is_pin_memory: bool) -> None:
        require_installed(REQUIREMENTS, "xedge sampling verify")  # VllmIncompatible names what is missing
        self.device = device
        self.requests: dict[int, _Request] = {}
        self.rejected_specs = 0  # specs dropped for naming a token id outside the vocabulary

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        try:
            spec = _spec_of(sampling_params)
        except SpecError as exc:
            raise ValueError(str(exc)) from exc
        if isinstance(spec, VerifySpec):
            sp = sampling_params
            if sp.temperature <= 0.0:
                raise ValueError(f"{XARG}: a draft spec needs temperature > 0 (greedy verify needs no spec)")
            if sp.min_p > 0.0 or sp.repetition_penalty != 1.0 or sp.presence_penalty or sp.frequency_penalty:
                raise ValueError(
                    f"{XARG}: min_p and penalties are applied after logits processors, so the verify rule "
                    "cannot see them; send the request without them"
                )

    def is_argmax_invariant(self) -> bool:
        return False  # it forces tokens

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.requests.pop(index, None)
        for index, params, _prompt, out in batch_update.added:
            spec = _spec_of(params) if params is not None else None
            if spec is None:
                self.requests.pop(index, None)
            else:
                self.requests[index] = _Request(spec, params, out, self.device)
        for a, b, direction in batch_update.moved:
            ra, rb = self.requests.pop(a, None), self.requests.pop(b, None)
            if ra is not None:
                self.requests[b] = ra
            if rb is not None and direction == MoveDirectionality.SWAP:
                self.requests[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.shape[-1]
        for index in [i for i, req in self.requests.items() if req.max_id >= vocab]:
            self.rejected_specs += 1
            log.warning(
                "%s names token id %d but the vocabulary has %d ids: spec dropped (%d so far)",
                XARG, self.requests[index].max_id, vocab, self.rejected_specs,
            )
            del self.requests[index]
        for index, req in self.requests.items():
            token = req.choose(logits[index])
            if token is not None:
                logits[index].fill_(float("-inf"))
                logits[index, token] = 0.0
        return logits
