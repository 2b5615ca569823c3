"""The xedge services of a resolved compose model (``docker compose config --format json``), typed.

Each xedge service carries the label ``xedge.role``: ``cloud`` (a vLLM replica with our plugins) or
``router``; that is how ``xedge up`` knows what to start. Only what the process-level twin needs is read
here: environment, volumes, published ports, depends_on, healthcheck.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from server.launch.compose.resolve import ComposeError, resolve

Role = Literal["cloud", "router"]
ROLE_LABEL = "xedge.role"


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


def _mounts(name: str, raw: Iterable[Mapping[str, Any]]) -> tuple[Mount, ...]:
    mounts = []
    for v in raw:
        kind = v.get("type")
        if kind not in ("bind", "volume") or not v.get("source"):
            raise ComposeError(f"service {name}: volume {dict(v)} is not supported by xedge up (named volumes and binds only)")
        mounts.append(Mount(source=str(v["source"]), target=str(v["target"]), kind=kind, read_only=bool(v.get("read_only"))))
    return tuple(mounts)


def _environment(raw: Mapping[str, Any]) -> dict[str, str]:
    # `config` prints a model that is itself a compose file, so a literal '$' comes back escaped as '$$'.
    return {k: str(v).replace("$$", "$") for k, v in raw.items() if v is not None}


def _ports(raw: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    return {int(p["target"]): int(p["published"]) for p in raw if str(p.get("published") or "").isdigit()}


def topology_from_model(path: Path, profiles: Iterable[str], model: Mapping[str, Any]) -> Topology:
    """The cloud replicas and the router of a resolved model (whose services are the active ones)."""
    profiles = tuple(profiles)
    chosen: list[Service] = []
    for name, spec in (model.get("services") or {}).items():
        role = (spec.get("labels") or {}).get(ROLE_LABEL)
        if role not in ("cloud", "router"):
            continue
        chosen.append(Service(
            name=name,
            role=role,
            environment=_environment(spec.get("environment") or {}),
            mounts=_mounts(name, spec.get("volumes") or []),
            published_ports=_ports(spec.get("ports") or []),
            depends_on={d: dict(c or {}) for d, c in (spec.get("depends_on") or {}).items()},
            healthcheck=spec.get("healthcheck"),
        ))  # fmt: skip
    clouds = tuple(s for s in chosen if s.role == "cloud")
    routers = [s for s in chosen if s.role == "router"]
    if not clouds or len(routers) != 1:
        raise ComposeError(
            f"{path} under profiles {list(profiles)}: expected >= 1 service labelled {ROLE_LABEL}=cloud and exactly "
            f"one labelled router, got clouds {[c.name for c in clouds]}, routers {[r.name for r in routers]}"
        )
    return Topology(path=path, profiles=profiles, clouds=clouds, router=routers[0])


def load_topology(
    path: Path,
    profiles: Iterable[str] = (),
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """The cloud replicas and the router of ``path`` under ``profiles``, resolved by Docker Compose."""
    profiles = tuple(profiles)
    return topology_from_model(path, profiles, resolve(path, profiles, env_file=env_file, environ=environ))
