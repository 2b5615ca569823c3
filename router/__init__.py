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
``service.py`` (session operations), ``verification.py`` (verify strategies), ``speculative.py``
(acceptance rules), ``sessions/`` (committed content, store), ``engine/`` (engine contract, vLLM HTTP
client), ``tokenizer.py``, ``replicas.py`` (consistent hashing), ``middleware.py``, ``errors.py``.
"""
