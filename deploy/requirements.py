"""Requirements and constraints for the Dockerfiles' dependency layers. Standard library only (Python >= 3.11).

``python requirements.py pyproject.toml [EXTRA ...]``: xedge's dependencies from pyproject.toml, one per
line. The Dockerfiles install these in their own layer (keyed on pyproject.toml and the lock) before
copying the sources, so a code change does not reinstall dependencies; every version comes from the lock
(``pip install -c scripts/constraints-cpu.txt``).

``python requirements.py --constraints LOCK``: constraints for installing into an image that already holds
a Python environment (the official vLLM image): every installed distribution pinned to its installed
version, then the lock's pins for the distributions the image lacks. pip can then add what is missing but
never changes what the image ships.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml defines {sorted(optional)}")
    return list(project["dependencies"]) + [r for e in extras for r in optional[e]]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: str) -> dict[str, str]:
    """``name==version`` lines of a lock file, by normalised name (comments and blank lines skipped)."""
    pins = {}
    with open(lock) as f:
        for n, raw in enumerate(f, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()):
                raise SystemExit(f"{lock}:{n}: expected name==version, got {raw.strip()!r}")
            pins[normalize(name)] = f"{name.strip()}=={version.strip()}"
    return pins


def keep_installed(lock: str) -> list[str]:
    installed = {normalize(d.metadata["Name"]): f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}
    locked = lock_pins(lock)
    return sorted(installed.values()) + sorted(v for k, v in locked.items() if k not in installed)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--constraints"]:
        print("\n".join(keep_installed(sys.argv[2])))
    else:
        print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
