"""The verify logits processor (server/engine/verify/vllm_adapter.py) driven the way vLLM's input batch drives it:
BatchUpdate add / move / remove, a live output-token list per request, ``apply`` on batch logits."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm")

from vllm import SamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality  # noqa: E402
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p  # noqa: E402

from client_edge.protocol.verify_spec import XARG, ForceSpec, VerifySpec  # noqa: E402
from server.engine.verify.vllm_adapter import SpeculativeVerifyProcessor  # noqa: E402

V = 16
LOGITS = torch.linspace(2.0, -2.0, V)  # token 0 most likely


def _params(spec, temperature=0.8, top_p=0.9, **kw) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_p=top_p, extra_args={XARG: spec.encode()}, **kw)


def _forced(row: torch.Tensor) -> int | None:
    finite = torch.isfinite(row).nonzero().flatten().tolist()
    return finite[0] if len(finite) == 1 else None


def _add(proc, index, params, out):
    proc.update_state(BatchUpdate(batch_size=index + 1, removed=[], added=[(index, params, [1, 2], out)], moved=[]))


def test_validate_params_refuses_what_it_cannot_apply():
    spec = VerifySpec.build([3], [{3: 1.0}], seed=1, stop_token=0)
    SpeculativeVerifyProcessor.validate_params(_params(spec))
    SpeculativeVerifyProcessor.validate_params(SamplingParams(temperature=0.5))  # no spec: nothing to check
    with pytest.raises(ValueError, match="penalties"):
        SpeculativeVerifyProcessor.validate_params(_params(spec, repetition_penalty=1.2))
    with pytest.raises(ValueError, match="temperature > 0"):
        SpeculativeVerifyProcessor.validate_params(_params(spec, temperature=0.0))
    with pytest.raises(ValueError, match="not JSON"):
        SpeculativeVerifyProcessor.validate_params(SamplingParams(extra_args={XARG: "{"}))


def test_force_spec_and_untouched_requests():
    proc = SpeculativeVerifyProcessor(None, torch.device("cpu"), False)
    out: list[int] = []
    proc.update_state(BatchUpdate(batch_size=2, removed=[], moved=[], added=[
        (0, SamplingParams(temperature=0.0), [1], []),
        (1, SamplingParams(temperature=0.0, extra_args={XARG: ForceSpec((7, 9)).encode()}), [1], out),
    ]))
    for want in (7, 9, None):
        logits = proc.apply(LOGITS.repeat(2, 1).clone())
        assert torch.equal(logits[0], LOGITS)  # the plain request is untouched
        assert _forced(logits[1]) == want
        out.append(want or 0)


def test_rejection_forces_correction_then_stop_and_partial_prefill_pass_is_redone():
    proc = SpeculativeVerifyProcessor(None, torch.device("cpu"), False)
    # Draft token 15 has p = 0 under top_p 0.9 (it is the least likely): always rejected at step 0.
    spec = VerifySpec.build([15, 0], [{15: 1.0}, {0: 1.0}], seed=3, stop_token=1)
    out: list[int] = []
    _add(proc, 0, _params(spec), out)
    garbage = torch.zeros(1, V)
    garbage[0, 15] = 50.0  # a discarded partial-prefill pass where the draft token looks certain
    first = _forced(proc.apply(garbage.clone())[0])
    assert first == 15  # kept on these logits, but vLLM drops this sample: the step does not advance
    correction = _forced(proc.apply(LOGITS.unsqueeze(0).clone())[0])
    assert correction not in (None, 15)
    out.append(correction)
    assert _forced(proc.apply(LOGITS.unsqueeze(0).clone())[0]) == 1  # stop token right after the correction
    out.append(1)
    assert _forced(proc.apply(LOGITS.unsqueeze(0).clone())[0]) is None


def test_moves_and_removals_follow_the_request():
    proc = SpeculativeVerifyProcessor(None, torch.device("cpu"), False)
    proc.update_state(BatchUpdate(batch_size=2, removed=[], moved=[], added=[
        (0, SamplingParams(temperature=0.0, extra_args={XARG: ForceSpec((4,)).encode()}), [1], []),
        (1, SamplingParams(temperature=0.0), [1], []),
    ]))
    proc.update_state(BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)]))
    logits = proc.apply(LOGITS.repeat(2, 1).clone())
    assert _forced(logits[1]) == 4 and torch.equal(logits[0], LOGITS)
    proc.update_state(BatchUpdate(batch_size=1, removed=[1], added=[], moved=[]))
    assert not proc.requests


def test_emitted_token_follows_vllms_sampling_distribution():
    """Step 0 over many seeds, point-mass draft on the 2nd token: emitted tokens ~ vLLM's own p
    (temperature 0.8, then vLLM's apply_top_k_top_p with top_k 6, top_p 0.9)."""
    temperature, top_k, top_p = 0.8, 6, 0.9
    p = apply_top_k_top_p((LOGITS / temperature).unsqueeze(0), torch.tensor([top_k]), torch.tensor([top_p]))
    p = p.softmax(-1)[0]
    n = 4000
    counts = torch.zeros(V)
    proc = SpeculativeVerifyProcessor(None, torch.device("cpu"), False)
    for seed in range(n):  # one request at a time in slot 0, as vLLM's batch reuses a freed slot
        spec = VerifySpec.build([1], [{1: 1.0}], seed=seed, stop_token=None)
        _add(proc, 0, _params(spec, temperature=temperature, top_p=top_p, top_k=top_k), [])
        counts[_forced(proc.apply(LOGITS.unsqueeze(0).clone())[0])] += 1
        proc.update_state(BatchUpdate(batch_size=0, removed=[0], added=[], moved=[]))
    freq = counts / n
    assert (freq[p == 0] == 0).all()
    assert (freq - p).abs().max() < 0.03, (freq, p)  # sd <= 0.008 at n = 4000


@pytest.mark.parametrize(
    "spec",
    [
        ForceSpec((7, 99_999_999)),  # the attack of issue 16: an IndexError here killed EngineCore
        VerifySpec.build([3], [{3: 0.5, V + 5: 0.5}], seed=1, stop_token=0),  # q support beyond the vocabulary
        VerifySpec.build([3], [{3: 1.0}], seed=1, stop_token=V),  # stop token beyond it
    ],
)
def test_out_of_vocabulary_spec_is_dropped_and_counted_not_raised(spec):
    proc = SpeculativeVerifyProcessor(None, torch.device("cpu"), False)
    params = _params(spec) if isinstance(spec, VerifySpec) else SamplingParams(extra_args={XARG: spec.encode()})
    proc.update_state(BatchUpdate(batch_size=2, removed=[], moved=[], added=[
        (0, params, [1], []),
        (1, SamplingParams(temperature=0.0, extra_args={XARG: ForceSpec((4,)).encode()}), [1], []),
    ]))
    logits = proc.apply(LOGITS.repeat(2, 1).clone())
    assert torch.equal(logits[0], LOGITS)  # runs as a plain sample
    assert _forced(logits[1]) == 4  # the other request's spec still applies
    assert proc.rejected_specs == 1 and list(proc.requests) == [1]


@pytest.mark.parametrize(
    "raw",
    [
        '{"v":1,"force":["5"]}',
        '{"v":1,"force":[true]}',
        '{"v":1,"force":[-1]}',
        '{"v":1,"force":[2.5]}',
        '{"v":1,"force":' + str(list(range(100))) + "}",
        '{"v":1,"draft":[3],"q":[[[3,NaN]]],"seed":1}',
        '{"v":1,"draft":[3],"q":[[[3,1.5]]],"seed":1}',
        '{"v":1,"draft":[3],"q":[[["3",1.0]]],"seed":1}',
        '{"v":1,"draft":[3],"q":[[[3,1.0]]],"seed":"1"}',
        '{"v":1,"draft":[3],"q":[[[3,1.0]]]}',
        "[" * 100_000,
    ],
)
def test_validate_params_refuses_loose_types_and_sizes(raw):
    with pytest.raises(ValueError, match=XARG):
        SpeculativeVerifyProcessor.validate_params(SamplingParams(temperature=0.5, extra_args={XARG: raw}))
