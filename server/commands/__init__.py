"""One module per `xedge` command; each exposes `register(app: typer.Typer)`.

Sub-apps: `server.cli.bench_app` (`xedge bench ...`) and `server.cli.eval_app` (`xedge eval ...`).
"""
