"""The verify logits processor inside a real vLLM on a CUDA GPU (the device's vLLM 0.26 in our runs).

Needs CUDA, vLLM and a local model directory in ``XEDGE_GPU_TEST_MODEL`` (on the H200 the random-weight
Llama from ``.gpucarry/run/make_model.py``); skipped otherwise, with the reason. Configured the way
``server/launch/vllm_cmd.py`` configures it (``logits_processors=["module:Class"]``, prefix caching on).
A random-weight model's next-token distribution is nearly flat, so ``logit_bias`` shapes it (vLLM applies
the bias before custom processors, so the processor's p includes it).
"""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest
import torch

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
vllm = pytest.importorskip("vllm")
MODEL = os.environ.get("XEDGE_GPU_TEST_MODEL")
if not MODEL:
    pytest.skip("set XEDGE_GPU_TEST_MODEL to a local model directory", allow_module_level=True)

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402

from client_edge.protocol.verify_spec import XARG, ForceSpec, VerifySpec  # noqa: E402
from server.engine.verify import PROCESSOR_FQCN  # noqa: E402

PROMPT = [1, *range(1000, 1300)]  # > 2 pages of 128 tokens: the prefix cache has full blocks to serve
BIAS = {500: 9.0, 501: 8.5, 502: 8.0, 503: 7.0, 504: 6.0, 505: 5.0}
N = 3000


@pytest.fixture(scope="module")
def llm() -> LLM:
    # In-process engine core: the test process has touched CUDA already, and a forked engine cannot.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return LLM(model=MODEL, max_model_len=2048, gpu_memory_utilization=0.3, enable_prefix_caching=True,
               logits_processors=[PROCESSOR_FQCN], enforce_eager=True, seed=0)


def _first_tokens(llm: LLM, params: list[SamplingParams]) -> list[list[int]]:
    outs = llm.generate([TokensPrompt(prompt_token_ids=PROMPT)] * len(params), params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def test_force_spec_forces(llm):
    got = _first_tokens(llm, [SamplingParams(temperature=0.0, max_tokens=3, extra_args={XARG: ForceSpec((7, 9, 7)).encode()})])
    assert got == [[7, 9, 7]]


def test_verify_matches_vllms_own_sampling(llm):
    """First emitted token of N verifies (point-mass draft on token 501) vs N plain vLLM samples, same
    temperature / top-p / logit_bias: each biased token's two frequencies (and the rest's, as one bucket)
    agree within 4.5 sd."""
    kw = {"temperature": 0.8, "top_p": 0.95, "logit_bias": BIAS, "max_tokens": 2}
    plain = _first_tokens(llm, [SamplingParams(seed=i, **kw) for i in range(N)])
    spec = [VerifySpec.build([501], [{501: 1.0}], seed=i, stop_token=2).encode() for i in range(N)]
    ours = _first_tokens(llm, [SamplingParams(seed=i, extra_args={XARG: s}, **kw) for i, s in enumerate(spec)])
    # The random model's ~49k other tokens share the rest of the nucleus: compare them as one bucket (-1).
    a = Counter(t[0] if t[0] in BIAS else -1 for t in plain)
    b = Counter(t[0] if t[0] in BIAS else -1 for t in ours)
    for tok in set(a) | set(b):
        pa, pb = a[tok] / N, b[tok] / N
        pbar = (pa + pb) / 2
        assert abs(pa - pb) <= 4.5 * math.sqrt(2 * pbar * (1 - pbar) / N) + 2 / N, (tok, a, b)
    assert len(a) >= 4, a
    # After a rejection the processor forces the stop token: such outputs are [correction, 2].
    rejected = [t for t in ours if t[0] != 501]
    assert rejected and all(len(t) == 2 and t[1] == 2 for t in rejected)


def test_verify_is_served_from_the_prefix_cache(llm):
    llm.generate([TokensPrompt(prompt_token_ids=PROMPT)], SamplingParams(max_tokens=1), use_tqdm=False)
    spec = VerifySpec.build([501, 502], [{501: 1.0}, {502: 1.0}], seed=1, stop_token=2).encode()
    out = llm.generate([TokensPrompt(prompt_token_ids=PROMPT)],
                       SamplingParams(temperature=1.0, max_tokens=3, logit_bias=BIAS, extra_args={XARG: spec}),
                       use_tqdm=False)[0]
    assert out.num_cached_tokens >= 256
