"""Speculative verification strategies of ``POST /v1/sessions/{id}/verify`` (one per session kind).

- ``greedy`` (token mode, greedy sampling): vLLM decodes ``len(draft) + 1`` greedy tokens from the
  committed prefix (served from its prefix cache) and the longest equal draft prefix is accepted; the
  cloud token after it is the correction. The result equals greedy cloud decoding by construction.
- ``rejection`` (token mode, sampling at any temperature / top_p): the standard speculative-sampling
  rule, run inside vLLM. One completion of ``len(draft) + 1`` tokens from the committed prefix (served
  from vLLM's prefix cache) carries a :class:`client_edge.protocol.verify_spec.VerifySpec`; the engine's logits
  processor (``server/engine/verify/vllm_adapter.py``) computes the session's exact sampling distribution p
  over the whole vocabulary at each draft position, keeps or rejects each draft token against the
  edge's q and forces the outcome. The router only reads the tokens back. Before the first such verify
  on a replica, :meth:`SessionEngine.require_verify_processor` checks that the processor is loaded there
  (without it vLLM would sample freely and the answer would be wrong, silently).
- ``text`` (text mode, greedy): the cloud's greedy text is compared with the draft character by character.

Each takes the :class:`router.session_engine.SessionEngine` (nothing else of the service) and returns the
fields of :class:`client_edge.protocol.VerifyResponse` except ``state``. :data:`STRATEGIES` maps the
session content's ``verify_method`` to its strategy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from client_edge.protocol import VerifyRequest
from client_edge.protocol.verify_spec import XARG, VerifySpec
from router.errors import RouterError
from router.session_engine import SessionEngine
from router.sessions.content import VerifyMethod
from router.sessions.store import Session
from router.speculative import common_prefix, greedy_accept
from router.usage import usage_of


async def greedy(svc: SessionEngine, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
    n = len(req.draft_token_ids)
    svc.check_room(len(prompt), n, "verify")
    max_tokens = min(n + 1, svc.model.max_model_len - len(prompt))
    result = await svc.generate(session, prompt, max_tokens, greedy=True, top_n=req.top_n)
    acc = greedy_accept(req.draft_token_ids, [t.token_id for t in result.tokens])
    accepted_ids = list(req.draft_token_ids[: acc.accepted])
    correction = None
    if acc.correction is not None:
        correction = svc.cloud_tokens(prompt + accepted_ids, [result.tokens[acc.accepted]])[0]
    return {
        "accepted": acc.accepted,
        "correction": correction,
        "accepted_text": svc.tok.decode(accepted_ids),
        "method": "greedy",
        "usage": usage_of([result]),
    }

async def rejection(svc: SessionEngine, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
    if req.draft_distributions is None:
        raise RouterError(
            "invalid_request",
            "a sampling session's verify needs draft_distributions: the edge's q at each draft position "
            "({token_id: 1.0} for a greedy drafter)",
        )
    draft = list(req.draft_token_ids)
    svc.check_room(len(prompt), len(draft) + 1, "verify")
    await svc.require_verify_processor(session)
    s = session.sampling
    seed = int.from_bytes(hashlib.blake2b(f"{s.seed}:{session.id}:{req.request_id}".encode(), digest_size=8).digest())
    eos = min(svc.tok.eos_token_ids) if svc.tok.eos_token_ids else None
    spec = VerifySpec.build(draft, req.draft_distributions, seed >> 1, stop_token=eos)
    max_tokens = min(len(draft) + 1, svc.model.max_model_len - len(prompt))
    result = await svc.generate(session, prompt, max_tokens, top_n=req.top_n, extra_meta=((XARG, spec.encode()),))
    ids = [t.token_id for t in result.tokens]
    # At a rejection the engine emits a token drawn from max(0, p - q), never the drafted one, so the
    # kept draft is exactly the common prefix.
    accepted = common_prefix(draft, ids)
    correction = None
    if accepted < len(ids):
        correction = svc.cloud_tokens(prompt + draft[:accepted], [result.tokens[accepted]])[0]
    return {
        "accepted": accepted,
        "correction": correction,
        "accepted_text": svc.tok.decode(draft[:accepted]),
        "method": "rejection",
        "usage": usage_of([result]),
    }

async def text(svc: SessionEngine, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
    if not session.sampling.greedy:
        raise RouterError("unsupported", "text-mode verify is greedy only; use escalate in a sampling text session")
    svc.check_text(req.draft_text, svc.max_draft, "draft_text")
    n = len(await svc.off_loop(svc.tok.encode, req.draft_text))
    if n > svc.max_draft:
        raise RouterError(
            "out_of_range", f"draft_text is {n} cloud tokens; this router verifies at most {svc.max_draft}"
        )
    # A draft of 0 cloud tokens (text the tokenizer drops) still needs one: the cloud token that covers it.
    svc.check_room(len(prompt), max(n, 1), "verify")
    max_tokens = min(n + 1, svc.model.max_model_len - len(prompt))
    result = await svc.generate(session, prompt, max_tokens, greedy=True, top_n=req.top_n)
    tokens = svc.cloud_tokens(prompt, result.tokens)
    cloud_text = "".join(t.text for t in tokens)
    accepted = common_prefix(req.draft_text, cloud_text)
    correction = None
    end = 0
    for t in tokens:  # the cloud token that covers the first character after the accepted text
        end += len(t.text)
        if end > accepted:
            correction = t.model_copy(update={"text": cloud_text[accepted:end]})
            break
        if t.token_id in svc.tok.eos_token_ids:  # the cloud ends right after the accepted text
            correction = t
            break
    return {
        "accepted": accepted,
        "correction": correction,
        "accepted_text": req.draft_text[:accepted],
        "method": "greedy",
        "usage": usage_of([result]),
    }


Strategy = Callable[[SessionEngine, Session, list[int], VerifyRequest], Awaitable[dict]]
STRATEGIES: dict[VerifyMethod, Strategy] = {"greedy": greedy, "rejection": rejection, "text": text}
