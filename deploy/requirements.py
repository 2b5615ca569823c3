"""Print xedge's dependencies from pyproject.toml, one per line: `python requirements.py pyproject.toml [EXTRA ...]`.

The Dockerfiles install these in their own layer (keyed on pyproject.toml only) before copying the
sources, so a code change does not reinstall dependencies. Standard library only (Python >= 3.11).
"""

from __future__ import annotations

import sys

import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml defines {sorted(optional)}")
    return list(project["dependencies"]) + [r for e in extras for r in optional[e]]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
