"""In-process fakes for router tests: a tiny tokenizer and an engine with a block prefix cache.

The fake engine is a deterministic toy language model (next-token logits are a hash of the last two
tokens) that keeps a prefix cache of full ``block_size`` blocks keyed by (salt, prefix), reporting
usage the way vLLM does: cached prompt tokens are whole cached blocks, and at least one prompt token is
always computed. Like a vLLM with xedge's verify logits processor it honours the ``xedge_verify`` request
meta (``runs_verify_processor = False`` plays a vLLM without it), with the same rule
(``server.engine.verify.rule``) on its own temperature / top-p distribution.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Sequence

import torch

from client_edge.protocol.verify_spec import XARG, ForceSpec, VerifySpec, decode
from router.engine.base import (
    EngineClient,
    EngineError,
    EngineToken,
    EngineUsage,
    GenerateCall,
    GenerateResult,
    ModelInfo,
)
from router.tokenizer import CloudTokenizer
from server.engine.verify.rule import speculative_step

BOS, EOS, UNK = 0, 1, 2
PIECES = ["<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz .,!?'", "th", "the", " the", "he", "in", "ing", "an", "and", " and"]


class FakeTokenizer(CloudTokenizer):
    """Greedy longest-match tokenizer over PIECES (so "th" + "e" tokenised apart differs from "the")."""

    def __init__(self, pieces: Sequence[str] = PIECES, start_ids: Sequence[int] = (BOS,)) -> None:
        self.pieces = list(pieces)
        self.vocab_size = len(self.pieces)
        self.start_ids = list(start_ids)
        self.eos_token_ids = frozenset([EOS])
        self._by_text = {p: i for i, p in enumerate(self.pieces) if not p.startswith("<")}
        self._longest = max(len(p) for p in self._by_text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids, offs, i = [], [], 0
        while i < len(text):
            for n in range(min(self._longest, len(text) - i), 0, -1):
                tid = self._by_text.get(text[i : i + n])
                if tid is not None:
                    ids.append(tid)
                    offs.append((i, i + n))
                    i += n
                    break
            else:
                ids.append(UNK)
                offs.append((i, i + 1))
                i += 1
        return ids, offs

    def encode(self, text: str) -> list[int]:
        return self.encode_with_offsets(text)[0]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def _logprobs(context: Sequence[int], vocab: int) -> list[float]:
    key = ",".join(map(str, context[-2:])).encode()
    raw = hashlib.shake_128(key).digest(vocab)
    logits = [raw[i] / 32.0 for i in range(vocab)]
    logits[BOS] = -50.0
    logits[EOS] -= 6.0  # long toy answers
    top = max(logits)
    z = math.log(sum(math.exp(x - top) for x in logits)) + top
    return [x - z for x in logits]


def _sampling_probs(logprobs: Sequence[float], temperature: float, top_p: float) -> torch.Tensor:
    """softmax(logits / T) with vLLM's top-p (drop the smallest tokens while their mass <= 1 - top_p)."""
    probs = torch.softmax(torch.tensor(logprobs, dtype=torch.float64) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort()
        drop = sorted_p.cumsum(0) <= 1 - top_p
        drop[-1] = False
        probs[idx[drop]] = 0.0
        probs /= probs.sum()
    return probs


class FakeEngine(EngineClient):
    """Toy LM with vLLM-like usage numbers. ``fail_with`` makes the next calls raise that error."""

    def __init__(self, vocab: int, *, max_model_len: int = 512, block_size: int = 16) -> None:
        self.vocab = vocab
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.blocks: set[tuple[str | None, tuple[int, ...]]] = set()
        self.calls: list[GenerateCall] = []
        self.fail_with: EngineError | None = None
        self.runs_verify_processor = True
        self.eos = EOS  # the token that ends a completion (finish_reason "stop"), as vLLM's EOS

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="fake-lm", root="/nonexistent", max_model_len=self.max_model_len)

    def greedy(self, prompt: Sequence[int], n: int) -> list[int]:
        out, ctx = [], list(prompt)
        for _ in range(n):
            lp = self.logprobs(ctx)
            tok = max(range(self.vocab), key=lp.__getitem__)
            out.append(tok)
            ctx.append(tok)
            if tok == self.eos:
                break
        return out

    def logprobs(self, context: Sequence[int]) -> list[float]:
        """Next-token log-distribution after ``context`` (override for another toy model)."""
        return _logprobs(context, self.vocab)

    def _cached(self, salt: str | None, prompt: Sequence[int]) -> int:
        b, n = self.block_size, 0
        while n + b <= len(prompt) - 1 and (salt, tuple(prompt[: n + b])) in self.blocks:
            n += b
        return n

    def _store(self, salt: str | None, seq: Sequence[int]) -> None:
        for end in range(self.block_size, len(seq) + 1, self.block_size):
            self.blocks.add((salt, tuple(seq[:end])))

    async def generate(self, call: GenerateCall) -> GenerateResult:
        self.calls.append(call)
        await asyncio.sleep(0)  # a real engine call yields to the event loop; let concurrent requests interleave
        if self.fail_with is not None:
            raise self.fail_with
        prompt = list(call.prompt_ids)
        if not prompt or max(prompt) >= self.vocab:
            raise EngineError("bad prompt", status=400)
        cached = self._cached(call.cache_salt, prompt)
        rng = random.Random(call.seed if call.seed is not None else 1234)
        ctx, tokens = list(prompt), []
        finish = "length"
        meta = dict(call.request_meta)
        spec = decode(str(meta[XARG])) if XARG in meta and self.runs_verify_processor else None
        gen = torch.Generator().manual_seed(spec.seed) if isinstance(spec, VerifySpec) else None
        rejected_at: int | None = None
        for step in range(call.max_tokens):
            lp = self.logprobs(ctx)
            tok: int | None = None
            if isinstance(spec, ForceSpec) and step < len(spec.tokens):
                tok = spec.tokens[step]
            elif isinstance(spec, VerifySpec) and rejected_at is not None:
                tok = spec.stop_token if step == rejected_at + 1 else None
            elif isinstance(spec, VerifySpec) and step < len(spec.draft):
                assert gen is not None
                p = _sampling_probs(lp, call.temperature, call.top_p)
                tok, kept = speculative_step(p, spec.draft[step], spec.dists[step], gen)
                rejected_at = None if kept else step
            if tok is not None:
                pass
            elif call.temperature == 0.0:
                tok = max(range(self.vocab), key=lp.__getitem__)
            else:
                p = _sampling_probs(lp, call.temperature, call.top_p).tolist()
                tok = rng.choices(range(self.vocab), weights=p)[0]
            ranked = sorted(range(self.vocab), key=lambda i, lp=lp: -lp[i])[: call.top_n]
            tokens.append(EngineToken(tok, lp[tok], tuple((i, lp[i]) for i in ranked)))
            ctx.append(tok)
            if tok == self.eos:
                finish = "stop"
                break
        # Like vLLM, KV exists for every token fed to the model: the prompt and all but the last sampled token.
        self._store(call.cache_salt, ctx[:-1])
        return GenerateResult(
            tokens=tuple(tokens),
            finish_reason=finish,
            usage=EngineUsage(prompt_tokens=len(prompt), cached_tokens=cached, completion_tokens=len(tokens)),
        )


def make_app(**overrides: object):  # noqa: ANN201 - returns (FastAPI, FakeEngine, FakeTokenizer)
    """A router app on the fake engine and tokenizer; ``overrides`` go to RouterSettings."""
    from router.app import create_app
    from router.settings import RouterSettings

    tok = FakeTokenizer()
    engine = FakeEngine(tok.vocab_size, max_model_len=int(overrides.pop("max_model_len", 512)))  # type: ignore[call-overload]
    settings = RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0, **overrides)  # type: ignore[arg-type]
    return create_app(settings, engines=[engine], tokenizer=tok), engine, tok


def base_of(ids: Sequence[int]) -> dict:
    from client_edge.protocol import token_prefix_hash

    return {"length": len(ids), "hash": token_prefix_hash(ids)}


def text_base_of(text: str) -> dict:
    from client_edge.protocol import text_prefix_hash

    return {"length": len(text), "hash": text_prefix_hash(text)}


def fingerprint(tok: CloudTokenizer) -> str:
    return tok.fingerprint
