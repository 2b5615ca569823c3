"""Port checks: fail before starting anything when a port is taken."""

from __future__ import annotations

import errno
import socket

from server.launch.process import LaunchError


def _family(host: str, port: int, what: str) -> socket.AddressFamily:
    """The address family the router's uvicorn binds ``host`` with (IPv6 for an address with ':', else IPv4);
    LaunchError (one line) when ``host`` does not resolve in it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LaunchError(f"host {host!r} for {what} does not resolve ({exc})") from None
    return family


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise LaunchError (one clear line) if `host:port` cannot be bound."""
    with socket.socket(_family(host, port, what), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LaunchError(f"port {host}:{port} for {what} is busy ({exc.strerror}); pick another port") from None
            raise LaunchError(f"cannot listen on {host}:{port} for {what} ({exc.strerror})") from None


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that was free a moment ago (for tests and auto-assigned internal ports)."""
    with socket.socket(_family(host, 0, "a free port"), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise LaunchError(f"cannot listen on {host} ({exc.strerror})") from None
        return int(sock.getsockname()[1])


def http_host(host: str) -> str:
    """``host`` as it goes into a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
