"""Speculative verification strategies of ``POST /v1/sessions/{id}/verify`` (one per session kind).

- ``greedy`` (token mode, greedy sampling): vLLM decodes ``len(draft) + 1`` greedy tokens from the
  committed prefix (served from its prefix cache) and the longest equal draft prefix is accepted; the
  cloud token after it is the correction. The result equals greedy cloud decoding by construction.
- ``rejection`` (token mode, temperature 1, top_p 1): one call scores the draft with ``prompt_logprobs`` and
  :func:`router.speculative.rejection_accept` applies the speculative-sampling rule. vLLM does not read
  its prefix cache for prompt-logprob requests, so this call recomputes the whole prompt (the usage
  numbers show it). Other temperatures / top_p are refused: prompt logprobs are the model's raw
  log-softmax in every ``--logprobs-mode`` (vLLM 0.32 ``gpu_model_runner._get_prompt_logprobs_dict``:
  "prompt tokens skip sampling processors, so processed_* and raw_* yield the same scores"), and
  rescaling top-n logprobs here cannot renormalise over the whole vocabulary.
- ``text`` (text mode, greedy): the cloud's greedy text is compared with the draft character by character.

Each returns the fields of :class:`client_edge.protocol.VerifyResponse` except ``state``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from client_edge.protocol import VerifyRequest
from router.engine.base import EngineToken
from router.errors import RouterError
from router.sessions.store import Session
from router.speculative import common_prefix, greedy_accept, rejection_accept
from router.usage import usage_of

if TYPE_CHECKING:
    from router.service import EdgeService


async def greedy(svc: EdgeService, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
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

async def rejection(svc: EdgeService, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
    s = session.sampling
    if req.draft_logprobs is None:
        raise RouterError("invalid_request", "a sampling session's verify needs draft_logprobs (log q of each draft token)")
    if s.temperature != 1.0 or s.top_p != 1.0:
        raise RouterError(
            "unsupported",
            f"sampling verify needs temperature 1.0 and top_p 1.0 (got {s.temperature}, {s.top_p}): vLLM scores the "
            "draft with prompt logprobs, which are never temperature/top-p processed (not even with "
            "--logprobs-mode processed_logprobs), so the rejection rule is only exact there; use greedy or "
            "per-token escalation",
        )
    draft = list(req.draft_token_ids)
    svc.check_room(len(prompt), len(draft) + 1, "verify")
    result = await svc.generate(
        session, prompt + draft, 1, top_n=req.top_n, prompt_logprobs=max(1, svc.settings.max_top_n)
    )
    assert result.prompt_logprobs is not None
    rows = [result.prompt_logprobs[len(prompt) + i] or {} for i in range(len(draft))]
    rng = random.Random(f"{s.seed}:{session.id}:{req.request_id}")
    acc = rejection_accept(draft, req.draft_logprobs, rows, rng)
    context = prompt + draft[: acc.accepted]
    if acc.correction is None:
        correction = svc.cloud_tokens(context, [result.tokens[0]])[0]
    else:
        row = rows[acc.accepted]
        correction = svc.cloud_tokens(context, [EngineToken(acc.correction, row[acc.correction])])[0]
    return {
        "accepted": acc.accepted,
        "correction": correction,
        "accepted_text": svc.tok.decode(draft[: acc.accepted]),
        "method": "rejection",
        "usage": usage_of([result]),
    }

async def text(svc: EdgeService, session: Session, prompt: list[int], req: VerifyRequest) -> dict:
    if not session.sampling.greedy:
        raise RouterError("unsupported", "text-mode verify is greedy only; use escalate in a sampling text session")
    n = len(svc.tok.encode(req.draft_text))
    if n > svc.settings.max_draft:
        raise RouterError(
            "out_of_range", f"draft_text is {n} cloud tokens; this router verifies at most {svc.settings.max_draft}"
        )
    svc.check_room(len(prompt), n, "verify")
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
    return {
        "accepted": accepted,
        "correction": correction,
        "accepted_text": req.draft_text[:accepted],
        "method": "greedy",
        "usage": usage_of([result]),
    }
