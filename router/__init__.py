"""xedge router: stateful edge sessions (escalate / verify / sync) in front of vLLM replicas.

Run: ``python -m router --vllm-urls http://127.0.0.1:8000 --port 8080 [--tokenizer-dir MODEL_DIR]`` or
the same through ``XEDGE_ROUTER_*`` environment variables (see :class:`router.settings.RouterSettings`).
vLLM must run with ``--enable-prefix-caching --enable-prompt-tokens-details``. Build the app in code
with :func:`router.app.create_app`.

Edge protocol (models in :mod:`client_edge.protocol`):

| method | path | does |
|---|---|---|
| GET | /v1/info | model, tokenizer fingerprint, vocab size, context, limits |
| POST | /v1/sessions | create (token ids or text; optional prefill) |
| GET / DELETE | /v1/sessions/{id} | state (``?include_content=true`` adds the committed ids/text) / delete |
| POST | /v1/sessions/{id}/escalate | commit delta, return the cloud's next k tokens + top-n logprobs |
| POST | /v1/sessions/{id}/verify | commit delta, verify a draft (greedy-exact or rejection rule) |
| POST | /v1/sessions/{id}/sync | commit delta (optionally prefill) |
| POST | /v1/sessions/{id}/truncate | keep the first n committed units |
| GET | /health | liveness |

Layout: ``app.py`` (factory + lifespan), ``settings.py``, ``api/`` (one router per resource),
``service.py`` (session operations), ``session_engine.py`` (engine calls for a session: the narrow
interface ``verification.py``, the verify strategies, depends on), ``speculative.py`` (acceptance rules),
``sessions/`` (committed content per mode, stores), ``engine/`` (engine contract, vLLM HTTP client),
``tokenizer.py``, ``replicas.py`` (consistent hashing), ``quota.py`` (per-tenant caps), ``middleware.py``
(body size and deadline), ``errors.py``. Deployment surface (``operations.py``): ``proxy.py`` (OpenAI
routes), ``auth.py`` + ``gate.py`` (API keys, checked before bodies; failed-auth throttling),
``ratelimit.py``, ``metrics.py``, ``openapi_doc.py`` (the OpenAPI document as the router behaves).
"""
