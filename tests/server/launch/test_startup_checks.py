"""Bad input to `xedge serve` (flags and XEDGE_* variables) stops it before any child starts, in one line
naming the flag or variable (never a traceback, never the value of a secret); a child that fails to start
says why; a restarted vLLM is checked for our plugins again. No real vLLM: child starts are faked."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from server.commands.serve import register
from server.launch.ports import ensure_port_free, free_port
from server.launch.process import LaunchError, ManagedProcess
from server.launch.stack import Stack
from server.settings import StackSettings

app = typer.Typer()
register(app)


@app.callback()
def _group() -> None:
    """A group, so that `serve` is invoked by name as under `xedge`."""


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.fixture
def no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any child process start fails the test: every refusal below must come before one."""

    def _refuse(self: ManagedProcess) -> None:
        raise AssertionError(f"{self.name} was started")

    monkeypatch.setattr(ManagedProcess, "start", _refuse)
    for name in ("XEDGE_ROUTER_API_KEYS", "XEDGE_ROUTER_CACHE_SALT_SECRET", "XEDGE_ROUTER_VLLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _serve(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["serve", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback instead of one line: {result.exception!r}") from result.exception
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--kv-cache-gib", "inf"], "xedge serve: --kv-cache-gib: Input should be a finite number"),
        (["--kv-cache-gib", "1e300"], "xedge serve: --kv-cache-gib: Input should be less than or equal to 1048576"),
        (["--host", ""], "xedge serve: --host: String should have at least 1 character"),
    ],
)
def test_bad_values_are_one_line(no_child: None, model_dir: Path, tmp_path: Path, args: list[str],
                                       line: str) -> None:  # fmt: skip
    code, lines = _serve(["--model", str(model_dir), "--device", "cpu", "--run-dir", str(tmp_path / "run"), *args])
    assert (code, lines) == (2, [line])


def test_a_bad_environment_variable_is_named_not_a_flag(no_child: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XEDGE_KV_CACHE_GIB", "0")
    assert _serve([]) == (2, ["xedge serve: XEDGE_KV_CACHE_GIB: Input should be greater than 0"])
    # the same value as a flag (which wins over the variable) is named as the flag
    assert _serve(["--kv-cache-gib", "-1"]) == (2, ["xedge serve: --kv-cache-gib: Input should be greater than 0"])


def test_a_malformed_secret_is_named_never_shown(no_child: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XEDGE_VLLM_API_KEY", "sk-short-9f3a")  # under the 16 characters required
    code, lines = _serve([])
    assert (code, lines) == (2, ["xedge serve: XEDGE_VLLM_API_KEY: String should have at least 16 characters"])
    with pytest.raises(ValidationError) as err:  # nor in the settings' own error (xedge up, the container entry)
        StackSettings(cache_salt_secret="salt-short-77c1")
    assert "salt-short-77c1" not in str(err.value)


def test_the_same_port_for_router_and_vllm_is_refused(no_child: None, model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    code, lines = _serve(["--model", str(model_dir), "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                          "--port", str(port), "--vllm-port", str(port)])  # fmt: skip
    assert (code, lines) == (1, [f"xedge serve: --port and --vllm-port are both {port}: the router and vLLM need a port each"])


def test_a_cpu_block_size_vllm_cannot_run_is_refused(no_child: None, model_dir: Path, tmp_path: Path) -> None:
    code, lines = _serve(["--model", str(model_dir), "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                          "--port", "0", "--block-size", "48"])  # fmt: skip
    assert (code, lines) == (1, ["xedge serve: --block-size 48: vLLM's CPU attention needs a multiple of 32"])


def test_cuda_without_a_gpu_is_refused(no_child: None, model_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, lines = _serve(["--model", str(model_dir), "--device", "cuda", "--run-dir", str(tmp_path / "run"), "--port", "0"])
    assert code == 1 and len(lines) == 1 and lines[0].startswith("xedge serve: --device cuda: torch ") and "sees no CUDA GPU" in lines[0]


@pytest.mark.parametrize("inside", [False, True])
def test_a_run_dir_that_cannot_hold_logs_is_one_line(no_child: None, model_dir: Path, tmp_path: Path,
                                                     inside: bool) -> None:  # fmt: skip
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    run_dir = a_file / "run" if inside else a_file
    code, lines = _serve(["--model", str(model_dir), "--device", "cpu", "--run-dir", str(run_dir), "--port", "0"])
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"xedge serve: run dir {run_dir} (--run-dir, XEDGE_RUN_DIR): cannot write logs there")


def test_an_unresolvable_host_is_not_called_a_busy_port(no_child: None, model_dir: Path, tmp_path: Path) -> None:
    code, lines = _serve(["--model", str(model_dir), "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                          "--host", "no-such-host.invalid", "--allow-open", "--port", "8000"])  # fmt: skip
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("xedge serve: host 'no-such-host.invalid' for the router does not resolve")
    with pytest.raises(LaunchError, match="does not resolve"):  # an auto port (picked after vLLM's start) too
        free_port("no-such-host.invalid")


def test_ipv6_loopback_router_url_and_port_check(model_dir: Path) -> None:
    stack = Stack(StackSettings(host="::1", model=str(model_dir)))
    stack.router_port = 8123
    assert stack.router_url == "http://[::1]:8123"
    ensure_port_free("::1", 0, "the router")  # an IPv6 address is checked as one, not refused as "busy"


FAKE_VLLM = r"""
import http.server, os, sys
from pathlib import Path
from client_edge.protocol.status_marker import write_marker
port = int(sys.argv[sys.argv.index("--port") + 1])
print("INFO starting fake vLLM", flush=True)
if Path(os.environ["FAKE_VLLM_MODE"]).read_text() == "crash":
    print("ERROR loading weights with key " + os.environ["VLLM_API_KEY"], flush=True)
    print("RuntimeError: not enough memory for the KV cache (needs 3.0 GiB)", flush=True)
    raise SystemExit(1)
if Path(os.environ["FAKE_VLLM_MODE"]).read_text() == "plugins":
    write_marker("attention", "impl")
    write_marker("prefix_cache", "block_pool")

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """vLLM replaced by a small HTTP server; what it does is read from the returned file at each start."""
    script, mode = tmp_path / "fake_vllm.py", tmp_path / "mode"
    script.write_text(FAKE_VLLM)
    mode.write_text("plugins")
    monkeypatch.setenv("FAKE_VLLM_MODE", str(mode))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[3]))
    monkeypatch.setattr("server.launch.stack.vllm_argv", lambda s, m, port, d: [sys.executable, str(script), "--port", str(port)])
    return mode


def _settings(model_dir: Path, run_dir: Path, **kw: object) -> StackSettings:
    return StackSettings(model=str(model_dir), device="cpu", router=False, run_dir=run_dir, startup_timeout_s=30,
                         vllm_api_key="vllm-key-5b0e2d4c9a71", **kw)  # fmt: skip


def test_a_child_that_fails_to_start_says_why_without_its_secrets(fake_vllm: Path, model_dir: Path,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    fake_vllm.write_text("crash")
    with pytest.raises(LaunchError) as err:
        Stack(_settings(model_dir, tmp_path / "run")).start()
    message = str(err.value)
    assert message.startswith("vLLM exited with code 1 before it was ready (log: ")
    assert "RuntimeError: not enough memory for the KV cache (needs 3.0 GiB)" in message
    assert "vllm-key-5b0e2d4c9a71" not in message and "with key ***" in message


def test_a_restarted_vllm_must_load_the_plugins_again(fake_vllm: Path, model_dir: Path, tmp_path: Path) -> None:
    stack = Stack(_settings(model_dir, tmp_path / "run")).start()
    try:
        fake_vllm.write_text("no plugins")  # the next vLLM comes up without them
        with pytest.raises(LaunchError, match=r"xedge plugins are not active in vLLM's engine \(missing: attention.impl"):
            stack.restart_vllm()
    finally:
        stack.stop()


def test_redact_masks_keys_and_url_passwords() -> None:
    from server.launch.process import redact

    env = {"XEDGE_ROUTER_API_KEYS": "acme:sk-0123456789abcdef", "XEDGE_ROUTER_SESSION_STORE": "redis://:hunter2pw@r:6379/0",
           "XEDGE_ROUTER_TOKENIZER_DIR": "/models/smol"}  # fmt: skip
    text = "auth sk-0123456789abcdef store redis://:hunter2pw@r:6379/0 tokenizer /models/smol"
    assert redact(text, env) == "auth *** store redis://:***@r:6379/0 tokenizer /models/smol"


def test_xedge_up_dry_run_hides_a_session_store_password(tmp_path: Path) -> None:
    from server.launch.compose.launcher import ComposeStack
    from server.launch.compose.topology import Service, Topology

    router = Service("router", "router", {"XEDGE_ROUTER_SESSION_STORE": "redis://:hunter2pw@redis:6379/0",
                                          "XEDGE_ROUTER_VLLM_URLS": "http://cloud:8000"}, (), {}, {}, None)  # fmt: skip
    plan = ComposeStack(Topology(tmp_path / "compose.yml", (), (), router), tmp_path).plan()
    assert "hunter2pw" not in json.dumps(plan) and "redis://:***@redis:6379/0" in plan[-1]


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`XEDGE_MODEL=` (a sourced deploy/.env) is the packaged default, as in compose, not the current directory."""
    for name in ("XEDGE_MODEL", "XEDGE_RUN_DIR", "XEDGE_CACHE_SALT_SECRET"):
        monkeypatch.setenv(name, "")
    s = StackSettings()
    assert (s.model, s.run_dir, s.cache_salt_secret) == (None, None, None)


def test_a_model_path_that_is_a_file_says_so(no_child: None, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_text("")
    code, lines = _serve(["--model", str(weights), "--port", "0"])
    assert (code, lines) == (1, [f"xedge serve: model '{weights}' is a file, not a directory (expected a local HF model dir)"])


def test_start_keeps_the_users_files_in_the_run_dir(fake_vllm: Path, model_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from client_edge.protocol.status_marker import write_marker

    run = tmp_path / "run"
    (run / "status").mkdir(parents=True)
    (run / "status" / "notes.txt").write_text("mine")
    (run / "status" / "results.json").write_text('{"mine": 1}')
    monkeypatch.setenv("XEDGE_STATUS_DIR", str(run / "status"))
    stale = write_marker("attention", "impl")  # a previous run's marker (this pid): removed
    assert stale is not None
    stack = Stack(_settings(model_dir, run)).start()
    stack.stop()
    assert (run / "status" / "notes.txt").read_text() == "mine"
    assert (run / "status" / "results.json").read_text() == '{"mine": 1}'
    assert not stale.exists()


def test_an_interrupt_while_stopping_the_router_still_stops_vllm(tmp_path: Path, model_dir: Path) -> None:
    """A second Ctrl-C while `stop` waits for the router must not leave vLLM (its own session) running."""
    import _thread
    import threading

    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    stack = Stack(StackSettings(model=str(model_dir)))
    stack.router = ManagedProcess("router", [sys.executable, "-c", stubborn], tmp_path / "router.log")
    stack.vllm = ManagedProcess("vLLM", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "vllm.log")
    router, vllm = stack.router, stack.vllm
    router.start()
    vllm.start()
    try:
        while "up" not in router.log_tail():  # its SIGTERM handler is in place
            time.sleep(0.05)
        timer = threading.Timer(1.0, _thread.interrupt_main)  # during the router's 15 s grace
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            stack.stop()
        deadline = time.monotonic() + 10
        while vllm.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert vllm.poll() is not None, "vLLM was never signalled"
    finally:
        router.stop(grace_s=0.1)
        vllm.stop(grace_s=0.1)


def test_a_variable_that_is_not_json_is_named(no_child: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XEDGE_VLLM_ARGS", "--max-num-seqs 4")  # a list of strings in JSON is expected
    assert _serve([]) == (2, ["xedge serve: XEDGE_VLLM_ARGS: not valid JSON"])


def test_vllm_does_not_inherit_the_routers_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`xedge serve` hands the router its keys through the environment; vLLM used to inherit them too."""
    from server.launch.vllm_cmd import ROUTER_ONLY_ENV

    monkeypatch.setenv("XEDGE_ROUTER_API_KEYS", "acme:0123456789abcdefXYZ")
    monkeypatch.setenv("XEDGE_ROUTER_CACHE_SALT_SECRET", "s3cr3t-s3cr3t-s3cr3t")
    monkeypatch.setenv("XEDGE_KEEP_ME", "1")
    dump = "import json, os; print(json.dumps(sorted(k for k in os.environ if k.startswith('XEDGE_'))))"
    child = ManagedProcess("vLLM", [sys.executable, "-c", dump], tmp_path / "env.log", env={"VLLM_API_KEY": "k" * 16},
                           withhold=ROUTER_ONLY_ENV)  # fmt: skip
    child.start()
    deadline = time.monotonic() + 10
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() == 0
    seen = json.loads((tmp_path / "env.log").read_text())
    assert "XEDGE_KEEP_ME" in seen and not [k for k in seen if k.startswith("XEDGE_ROUTER_")]
