"""Port checks: fail before starting anything when a port is taken."""

from __future__ import annotations

import socket

from server.launch.process import LaunchError


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise LaunchError (one clear line) if `host:port` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LaunchError(f"port {host}:{port} for {what} is busy ({exc.strerror}); pick another port") from None


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that was free a moment ago (for tests and auto-assigned internal ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
