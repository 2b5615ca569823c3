"""``python -m router [--vllm-urls URL[,URL...]] [--port N] ...``: run the router with uvicorn.

Every setting of :class:`router.settings.RouterSettings` is a flag (kebab-case) and an environment
variable (``XEDGE_ROUTER_<NAME>``); flags win.
"""

from __future__ import annotations

import logging

import uvicorn

from router.app import create_app
from router.operations import default_extensions
from router.settings import RouterSettings


def main() -> None:
    settings = RouterSettings(_cli_parse_args=True, _cli_kebab_case=True, _cli_prog_name="python -m router")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, extensions=default_extensions(settings))
    # Connection-level bounds: past max_connections uvicorn answers 503 at once; an idle keep-alive
    # connection is closed after 5 s. Bodies are bounded in size and time by router.middleware.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        limit_concurrency=settings.max_connections, timeout_keep_alive=5,
    )  # fmt: skip


if __name__ == "__main__":
    main()
