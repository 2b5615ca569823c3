"""xedge router: stateful edge sessions (escalate / verify / sync) in front of vLLM replicas.

Build the app with :func:`router.app.create_app`; run it with ``python -m router``.
"""
