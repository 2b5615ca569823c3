"""`xedge demo` refuses bad input before it starts the stack (a minute of vLLM start-up), in one line, and
SIGTERM stops every child it started (they run in their own sessions: nothing else would reach them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import typer
from typer.testing import CliRunner

from server.commands.demo import register

app = typer.Typer()
register(app)


@app.callback()
def _group() -> None:
    """A group, so that `demo` is invoked by name as under `xedge`."""


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Stack:
        def __init__(self, *a: object, **k: object) -> None:
            raise AssertionError("the stack was started")

    monkeypatch.setattr("server.launch.stack.Stack", _Stack)


def _demo(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["demo", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback instead of one line: {result.exception!r}") from result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("XEDGE_KV_CACHE_GIB", "nan", "xedge demo: XEDGE_KV_CACHE_GIB: Input should be a finite number\n"),
        ("XEDGE_VLLM_ARGS", "--max-num-seqs 4", "xedge demo: XEDGE_VLLM_ARGS: not valid JSON\n"),
    ],
)
def test_a_bad_environment_variable_stops_the_demo_in_one_line(no_stack: None, monkeypatch: pytest.MonkeyPatch,
                                                               name: str, value: str, line: str) -> None:  # fmt: skip
    monkeypatch.setenv(name, value)
    assert _demo([]) == (2, line)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gate", "top1"], "top1 threshold must be in [0, 1], got 2.0"),  # the entropy default, out of top1's range
        (["--gate", "nope"], "unknown gate 'nope'"),
        (["--n-prompts", "0"], "--n-prompts"),
        (["--max-new-tokens", "-1"], "--max-new-tokens"),
    ],
)
def test_bad_demo_flags_are_refused_before_the_stack_starts(no_stack: None, args: list[str], needle: str) -> None:
    code, output = _demo(args)
    assert code == 2 and needle in " ".join(output.replace("│", " ").split()), output  # rich may wrap it in a box


DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import server.demo.edge
    import server.launch.stack
    from server.launch.process import ManagedProcess

    run = Path(sys.argv[1])

    class FakeStack:  # one child in its own session, as vLLM is; ready at once
        router_url = vllm_url = "http://127.0.0.1:9"
        def __init__(self, settings, log=None):
            self.run_dir, self.model_dir = run, run
        def start(self):
            self.child = ManagedProcess("vLLM", [sys.executable, "-c", "import time; time.sleep(600)"], run / "child.log")
            self.child.start()
            (run / "child.pid").write_text(str(self.child.pid))
            return self
        def stop(self):
            self.child.stop(grace_s=5)

    def slow_edge(*a, **k):  # loading the edge model: where SIGTERM arrives
        (run / "ready").write_text("")
        time.sleep(600)

    server.launch.stack.Stack = FakeStack
    server.demo.edge.make_edge_runner = slow_edge
    from server.cli import main
    sys.argv = ["xedge", "demo", "--run-dir", str(run)]
    main()
    """
)


def test_sigterm_stops_the_demos_children(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path)], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(repo)})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the demo did not get to the edge model"
            time.sleep(0.1)
        child = psutil.Process(int((tmp_path / "child.pid").read_text()))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        gone, alive = psutil.wait_procs([child], timeout=20)
        assert not alive, "the demo's child outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
        if (tmp_path / "child.pid").exists():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(int((tmp_path / "child.pid").read_text())).kill()


def test_the_demo_honours_xedge_run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []

    class _Stack:  # records the settings, then stops the demo as a failed start would
        def __init__(self, settings: object, log: object = None) -> None:
            seen.append(settings)

        def start(self) -> None:
            from server.launch.process import LaunchError

            raise LaunchError("stop here")

    monkeypatch.setattr("server.launch.stack.Stack", _Stack)
    monkeypatch.setattr("server.launch.supervise.interrupt_on_sigterm", lambda: None)
    monkeypatch.setenv("XEDGE_RUN_DIR", str(tmp_path / "from-env"))
    code, output = _demo([])
    assert (code, output.splitlines()[-1]) == (1, "xedge demo: stop here")  # after a note when ../shared/data is absent
    assert seen[0].run_dir == tmp_path / "from-env"
