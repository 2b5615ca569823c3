"""Read a compose file as Docker Compose does (``.env``, interpolation, profiles) into a typed topology.

Each xedge service carries the label ``xedge.role``: ``cloud`` (a vLLM replica with our plugins) or
``router``; that is how ``xedge up`` knows what to start. Only the parts of the compose model that the
process-level twin needs are typed here; the full file is still checked by ``docker compose config``
(tests/deploy).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from server.launch.compose.interpolate import interpolate_tree, parse_env_file

Role = Literal["cloud", "router"]
ROLE_LABEL = "xedge.role"


class ComposeError(ValueError):
    """The compose file cannot be turned into an xedge topology; the message says which part."""


@dataclass(frozen=True)
class Mount:
    """``source`` is a host path (bind) or a named volume's name; ``target`` the path in the container."""

    source: str
    target: str
    kind: Literal["bind", "volume"]
    read_only: bool


@dataclass(frozen=True)
class Service:
    name: str
    role: Role
    environment: Mapping[str, str]
    mounts: tuple[Mount, ...]
    published_ports: Mapping[int, int]  # container port -> host port
    depends_on: Mapping[str, Mapping[str, Any]]
    healthcheck: Mapping[str, Any] | None

    def host_path(self, container_path: str, volume_root: Path, base: Path) -> Path:
        """Where ``container_path`` of this service lives on the host: through its longest matching mount
        (a bind's source, relative to ``base``; a named volume's directory under ``volume_root``)."""
        best: Mount | None = None
        for m in self.mounts:
            t = m.target.rstrip("/")
            if (container_path == t or container_path.startswith(t + "/")) and (best is None or len(t) > len(best.target)):
                best = m
        if best is None:
            raise ComposeError(f"service {self.name}: {container_path} is not under any of its volumes")
        rest = container_path[len(best.target.rstrip("/")) :].lstrip("/")
        root = (base / Path(best.source).expanduser()) if best.kind == "bind" else volume_root / best.source
        return root / rest if rest else root


@dataclass(frozen=True)
class Topology:
    """The services of the selected profiles: cloud replicas (in file order) and the router."""

    path: Path
    profiles: tuple[str, ...]
    clouds: tuple[Service, ...]
    router: Service


def load_compose(path: Path, env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file, parsed (YAML anchors and merge keys resolved) and interpolated. The environment
    is ``env_file`` (default: ``.env`` next to the file, if present) overlaid by ``environ`` (default:
    the process environment), as with ``docker compose``."""
    if not path.is_file():
        raise ComposeError(f"compose file {path} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ComposeError(f"{path}: not a compose file (no 'services' mapping)")
    if env_file is None and (path.parent / ".env").is_file():
        env_file = path.parent / ".env"
    env = parse_env_file(env_file) if env_file is not None else {}
    env.update(os.environ if environ is None else environ)
    return interpolate_tree(data, env)


def _environment(name: str, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    items: Iterable[tuple[str, object]]
    if isinstance(raw, list):
        items = [(str(e).partition("=")[0], str(e).partition("=")[2]) for e in raw]
    elif isinstance(raw, dict):
        items = raw.items()
    else:
        raise ComposeError(f"service {name}: environment must be a mapping or a list")
    env = {}
    for key, value in items:
        if value is None:
            continue  # compose: taken from the host shell; the twin does not forward the host's shell
        env[str(key)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def _mounts(name: str, raw: object, named: Iterable[str]) -> tuple[Mount, ...]:
    named = set(named)
    mounts = []
    for v in raw or []:
        if isinstance(v, dict):
            source, target = str(v.get("source", "")), str(v["target"])
            kind = "bind" if v.get("type") == "bind" else "volume"
            ro = bool(v.get("read_only", False))
        else:
            parts = str(v).split(":")
            if len(parts) < 2:
                raise ComposeError(f"service {name}: anonymous volume {v!r} is not supported by xedge up")
            source, target = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "volume" if source in named else "bind"
        if kind == "volume" and source not in named:
            raise ComposeError(f"service {name}: volume {source!r} is not declared under top-level 'volumes'")
        mounts.append(Mount(source=source, target=target, kind=kind, read_only=ro))
    return tuple(mounts)


def _ports(name: str, raw: object) -> dict[int, int]:
    ports = {}
    for p in raw or []:
        if isinstance(p, dict):
            if p.get("published") is not None:
                ports[int(p["target"])] = int(p["published"])
            continue
        parts = str(p).split(":")
        if len(parts) == 1:
            continue  # container port only: compose picks an ephemeral host port
        ports[int(parts[-1].split("/")[0])] = int(parts[-2])
    return ports


def active(service: Mapping[str, Any], profiles: Iterable[str]) -> bool:
    own = service.get("profiles") or []
    return not own or bool(set(own) & set(profiles))


def load_topology(
    path: Path,
    profiles: Iterable[str] = (),
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """The cloud replicas and the router of ``path`` under ``profiles``."""
    profiles = tuple(profiles)
    data = load_compose(path, env_file, environ)
    named = (data.get("volumes") or {}).keys()
    services = {n: s for n, s in data["services"].items() if active(s, profiles)}
    chosen: dict[str, Service] = {}
    for name, spec in services.items():
        role = (spec.get("labels") or {}).get(ROLE_LABEL)
        if role not in ("cloud", "router"):
            continue
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for dep, cond in depends.items():
            if dep not in services and (cond or {}).get("required", True):
                raise ComposeError(f"service {name} depends on {dep!r}, which is not active under profiles {profiles}")
        chosen[name] = Service(
            name=name,
            role=role,
            environment=_environment(name, spec.get("environment")),
            mounts=_mounts(name, spec.get("volumes"), named),
            published_ports=_ports(name, spec.get("ports")),
            depends_on={d: dict(c or {}) for d, c in depends.items() if d in services},
            healthcheck=spec.get("healthcheck"),
        )
    clouds = tuple(s for s in chosen.values() if s.role == "cloud")
    routers = [s for s in chosen.values() if s.role == "router"]
    if not clouds or len(routers) != 1:
        raise ComposeError(
            f"{path} under profiles {list(profiles)}: expected >= 1 service labelled {ROLE_LABEL}=cloud and exactly "
            f"one labelled router, got clouds {[c.name for c in clouds]}, routers {[r.name for r in routers]}"
        )
    return Topology(path=path, profiles=profiles, clouds=clouds, router=routers[0])
