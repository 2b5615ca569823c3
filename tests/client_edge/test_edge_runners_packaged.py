"""Both local runners on the packaged SmolLM2-135M-Instruct: llama.cpp on the GGUF itself, transformers on its
float32 dequantisation (the same Q4_1 weights). The same runner contract and session tests run on both
(parametrised), against the real router over a toy cloud that shares SmolLM2's tokenizer; greedy answers
of the two runners are compared; bad model files and over-long contexts are typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("transformers")

from client_edge.errors import (  # noqa: E402
    ContextLengthError,
    HiddenStatesUnavailableError,
    ModelFileError,
    NotACausalLMError,
    TokenizerMismatchError,
)
from client_edge.gates import create_gate  # noqa: E402
from client_edge.gates.mlp import MLPRouter, MLPRouterGate, RouterMetadata  # noqa: E402
from client_edge.result import TokenSource  # noqa: E402
from client_edge.runner.base import ModelRunner  # noqa: E402
from client_edge.runner.llama_cpp_runner import LlamaCppRunner, LlamaCppRunnerConfig  # noqa: E402
from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig  # noqa: E402
from client_edge.session import EdgeSession, SessionConfig  # noqa: E402
from router.tokenizer import HFTokenizer  # noqa: E402
from server.models.store import SMOLLM2, ensure_default_model  # noqa: E402
from tests.client_edge.router_cloud import RouterCloud, router_cloud  # noqa: E402
from tests.fakes.engine import FakeEngine  # noqa: E402

N = 8
QUESTION = "What is the capital of France? Answer in one sentence."
RUNNERS = ["llama.cpp", "transformers"]


@pytest.fixture(scope="module")
def runners() -> Iterator[dict[str, ModelRunner]]:
    """llama.cpp tokenising with the cloud's tokenizer.json (token mode; see test_llama_cpps_own_tokenizer_...).
    One thread each: llama.cpp and torch threads spin while they wait for each other, which crawls on a busy
    2-core machine."""
    hf_dir = ensure_default_model()
    llama = LlamaCppRunner(
        LlamaCppRunnerConfig(SMOLLM2.path(), n_ctx=2048, n_threads=1, tokenizer_json=hf_dir / "tokenizer.json")
    )
    yield {"llama.cpp": llama, "transformers": TransformersRunner(TransformersRunnerConfig(hf_dir, num_threads=1))}
    llama.close()


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest, runners: dict[str, ModelRunner]) -> ModelRunner:
    return runners[request.param]


@pytest.fixture(scope="module")
def hf_tokenizer() -> HFTokenizer:
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(str(ensure_default_model())))


@pytest.fixture
def cloud(hf_tokenizer: HFTokenizer) -> Iterator[RouterCloud]:
    """The real router over a toy cloud model on SmolLM2's vocabulary and tokenizer (token mode)."""
    with router_cloud(engine=FakeEngine(hf_tokenizer.vocab_size, max_model_len=2048), tok=hf_tokenizer) as c:
        yield c


def _greedy(runner: ModelRunner, prompt: list[int], n: int) -> list[int]:
    """The runner's own greedy answer, up to and including EOS."""
    step, out = runner.prefill(prompt), []
    for _ in range(n):
        out.append(step.greedy_token)
        if out[-1] in runner.eos_token_ids:
            break
        step = runner.append(out[-1:])
    return out


# --- the runner contract, on both ----------------------------------------------------------------


def test_kv_cache_steps_and_rollback(runner: ModelRunner) -> None:
    prompt = runner.apply_chat_template(QUESTION)
    whole = runner.prefill(prompt).logits
    assert whole.shape == (runner.vocab_size,) and whole.dtype == np.float32 and np.isfinite(whole).all()
    runner.prefill(prompt[:-3])
    stepped = runner.append(prompt[-3:]).logits  # the KV cache carries the first part
    assert int(np.argmax(stepped)) == int(np.argmax(whole)) and np.abs(stepped - whole).max() < 0.05
    # reference: the same single-token steps with nothing to roll back
    runner.prefill(prompt)
    other = (int(np.argmax(whole)) + 1) % runner.vocab_size  # a draft token the "cloud" will reject
    runner.append([other])
    ref = runner.append([other]).logits
    # a 4-token draft, 3 rejected: the cache must hold exactly prompt + draft[0] again
    runner.prefill(prompt)
    for t in [other, 7, 8, 9]:
        runner.append([t])
    assert runner.length == len(prompt) + 4
    runner.truncate(len(prompt) + 1)
    assert runner.length == len(prompt) + 1
    again = runner.append([other]).logits
    np.testing.assert_allclose(again, ref, atol=1e-4)  # same computation on the rolled-back cache
    # without the rollback the rejected tokens would still be attended to: the logits would differ
    runner.prefill(prompt)
    for t in [other, 7, 8, 9]:
        runner.append([t])
    assert np.abs(runner.append([other]).logits - ref).max() > 0.1


def test_tokenizers_agree_with_the_cloud(runners: dict[str, ModelRunner], hf_tokenizer: HFTokenizer) -> None:
    """Token mode needs equal fingerprints: llama.cpp with the cloud's tokenizer.json = the HF one (the cloud)."""
    llama, hf = runners["llama.cpp"], runners["transformers"]
    assert llama.tokenizer_fingerprint == hf.tokenizer_fingerprint == hf_tokenizer.fingerprint
    assert llama.apply_chat_template(QUESTION) == hf.apply_chat_template(QUESTION)
    assert llama.eos_token_ids == hf.eos_token_ids


def test_llama_cpps_own_tokenizer_is_refused_in_token_mode_and_works_in_text_mode(cloud: RouterCloud) -> None:
    """The GGUF's own tokenizer (llama.cpp's pre-tokenizer) splits some text differently from the cloud's
    Hugging Face tokenizer: its fingerprint differs, so token mode is a typed error naming the problem."""
    own = LlamaCppRunner(LlamaCppRunnerConfig(SMOLLM2.path(), n_ctx=512, n_threads=1))
    text = "3.14159\n\n\t12345678"  # from the fingerprint probe: llama.cpp and HF split it differently
    assert own.encode(text) != cloud.tok.encode(text) and own.decode(own.encode(text)) == text
    assert own.tokenizer_fingerprint != cloud.fingerprint
    prompt = own.apply_chat_template(QUESTION)
    with cloud.client() as client:
        with pytest.raises(TokenizerMismatchError, match="mode='text'"):
            EdgeSession(own, create_gate("entropy", threshold=1.0), client, SessionConfig(max_new_tokens=4)).generate(prompt)
        cfg = SessionConfig(mode="text", max_new_tokens=N)
        res = EdgeSession(own, create_gate("random", threshold=0.5), client, cfg).generate(prompt, cloud_prompt_text=QUESTION)
    assert res.n_unverified == 0 and res.unsynced_units == 0 and res.n_cloud > 0


# --- the same session tests on both runners ------------------------------------------------------


def test_small_only_is_the_runners_greedy_answer(runner: ModelRunner) -> None:
    prompt = runner.apply_chat_template(QUESTION)
    want = _greedy(runner, prompt, N)
    res = EdgeSession(runner, create_gate("entropy", threshold=99.0), None, SessionConfig(max_new_tokens=N)).generate(prompt)
    assert res.token_ids == want and res.sources == [TokenSource.LOCAL] * len(want)


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_cloud_decided_answer_equals_the_cloud_greedy(runner: ModelRunner, cloud: RouterCloud, strategy: str) -> None:
    """The toy cloud disagrees with SmolLM2 almost everywhere: speculative rounds reject drafts and the
    runner rolls its KV cache back every round; the answer is still exactly the cloud's."""
    prompt = runner.apply_chat_template(QUESTION)
    want = cloud.engine.greedy(prompt, N)
    gate = create_gate("random", threshold=0.0)  # escalate every position
    with cloud.client() as client:
        res = EdgeSession(runner, gate, client, SessionConfig(strategy=strategy, max_new_tokens=N)).generate(prompt)
    assert res.token_ids == want[: len(res.token_ids)] and res.n_unverified == 0 and res.unsynced_units == 0
    assert cloud.state(res.cloud_session_id)["token_ids"] == prompt + res.token_ids
    assert runner.length in (len(prompt) + len(res.token_ids), len(prompt) + len(res.token_ids) - 1)


@pytest.mark.parametrize("gate", ["top1", "entropy", "rolling_entropy", "random"])
def test_every_logits_gate_runs(runner: ModelRunner, cloud: RouterCloud, gate: str) -> None:
    prompt = runner.apply_chat_template(QUESTION)
    threshold = {"top1": 0.3, "entropy": 1.0, "rolling_entropy": 1.0, "random": 0.7}[gate]
    with cloud.client() as client:
        res = EdgeSession(runner, create_gate(gate, threshold=threshold), client, SessionConfig(max_new_tokens=N)).generate(prompt)
    assert len(res.token_ids) == N or res.finish_reason == "eos"
    assert res.n_unverified == 0 and res.count(TokenSource.LOCAL) + res.n_cloud == len(res.token_ids)


def test_hidden_state_gate_only_on_the_runner_that_has_them(runner: ModelRunner) -> None:
    h = runner.hidden_size
    meta = RouterMetadata(h, (h, 1), runner.tokenizer_fingerprint, "smollm2", None, 0.5, 1, 1, 0.5, 0.5)
    gate = MLPRouterGate(0.5, router=MLPRouter((np.zeros((h, 1), np.float32),), (np.zeros(1, np.float32),), meta))
    prompt = runner.apply_chat_template(QUESTION)
    if runner.provides_hidden_states:
        res = EdgeSession(runner, gate, None, SessionConfig(max_new_tokens=4)).generate(prompt)
        assert res.escalated_positions == 4  # sigmoid(0) = 0.5 >= threshold: every position
    else:
        with pytest.raises(HiddenStatesUnavailableError, match="mlp"):
            EdgeSession(runner, gate, None)
        with pytest.raises(HiddenStatesUnavailableError):
            runner.teacher_forced(prompt)


def test_greedy_answers_of_the_two_runners(runners: dict[str, ModelRunner]) -> None:
    """Same Q4_1 weights (transformers runs their float32 dequantisation); llama.cpp multiplies them in
    quantised form (activations rounded to 8 bits), so logits differ slightly and a near tie can flip a
    greedy token. Measured and kept in bench/results/edge/notes.md; here: the first tokens agree."""
    prompt = runners["llama.cpp"].apply_chat_template(QUESTION)
    a = _greedy(runners["llama.cpp"], prompt, 24)
    b = _greedy(runners["transformers"], prompt, 24)
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
    assert same >= 8, (same, runners["llama.cpp"].decode(a), runners["transformers"].decode(b))
    la, lb = runners["llama.cpp"].prefill(prompt).logits, runners["transformers"].prefill(prompt).logits
    assert np.abs(la - lb).max() < 1.5 and int(np.argmax(la)) == int(np.argmax(lb))


# --- bad input -----------------------------------------------------------------------------------


def test_a_file_that_is_not_gguf_is_a_model_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(ModelFileError, match="not a readable GGUF"):
        LlamaCppRunner(LlamaCppRunnerConfig(bad))


def test_an_embedding_model_gguf_is_not_a_causal_lm(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "bert.gguf"
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_block_count(1)
    w.add_context_length(16)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(NotACausalLMError, match="'bert' is an encoder"):
        LlamaCppRunner(LlamaCppRunnerConfig(path))


def test_context_longer_than_the_local_model(tmp_path: Path) -> None:
    small = LlamaCppRunner(LlamaCppRunnerConfig(SMOLLM2.path(), n_ctx=64, n_threads=1))
    ctx = small.context_length
    assert ctx == 64
    prompt = small.apply_chat_template(QUESTION)
    gate = create_gate("entropy", threshold=1.0)
    with pytest.raises(ContextLengthError, match=rf"plus max_new_tokens \({ctx}\).*holds {ctx}"):
        EdgeSession(small, gate, None, SessionConfig(max_new_tokens=ctx)).generate(prompt)
    with pytest.raises(ContextLengthError, match=f"needs {ctx + 1} tokens"):
        small.prefill(list(range(100, 100 + ctx + 1)))
    assert small.prefill(list(range(100, 100 + ctx))).logits.shape == (small.vocab_size,)  # exactly full fits
