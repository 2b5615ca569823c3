"""The docker stack test's own housekeeping on a real engine: a rebuild that re-tags an image removes the
image it superseded (each CPU image left dangling was 4 GB: 57 of them once filled this machine's disk and
the CI's), and a data root short of space fails the build up front, saying so."""

from __future__ import annotations

import uuid

import pytest

from tests.deploy.docker_helpers import docker_or_skip, image_ids, remove_superseded, require_disk, run

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

BASE = "local/debian:bookworm"  # what ../shared/docker/offline_engine.sh imports; python:3.11-slim would do too


def build(docker: str, tag: str, dockerfile: str) -> str:
    run([docker, "build", "-q", "-t", tag, "-"], input=dockerfile, timeout=300)
    return image_ids(docker, [tag])[tag]


def test_rebuild_removes_the_superseded_images_children_first() -> None:
    docker = docker_or_skip()
    base = next((b for b in (BASE, "python:3.11-slim") if image_ids(docker, [b])), None)
    if base is None:
        pytest.skip(f"neither {BASE} nor python:3.11-slim on the engine (../shared/docker/offline_engine.sh makes them)")
    name = f"xedge-cleanup-test-{uuid.uuid4().hex[:8]}"
    parent, child, keep = f"{name}-parent:t", f"{name}-child:t", f"{name}-keep:t"
    try:
        build(docker, keep, f"FROM {base}\nRUN echo keep > /keep\n")
        build(docker, parent, f"FROM {base}\nRUN echo 1 > /v\n")
        build(docker, child, f"FROM {parent}\nRUN echo 1 > /w\n")
        before = image_ids(docker, [keep, parent, child])
        new_parent = build(docker, parent, f"FROM {base}\nRUN echo 2 > /v\n")
        new_child = build(docker, child, f"FROM {parent}\nRUN echo 2 > /w\n")
        removed = remove_superseded(docker, before)
        assert removed == [before[child], before[parent]]  # the child first, else docker refuses the parent
        assert image_ids(docker, [keep, parent, child]) == {keep: before[keep], parent: new_parent, child: new_child}
        for old in removed:
            assert not image_ids(docker, [old])
    finally:
        run([docker, "rmi", "-f", child, parent, keep], timeout=300)


def test_short_disk_fails_up_front_with_the_numbers() -> None:
    docker = docker_or_skip()
    require_disk(docker, 0.001)  # passes: any engine has a megabyte
    with pytest.raises(pytest.fail.Exception, match=r"GiB free; building deploy/ needs about 1e\+06 GiB"):
        require_disk(docker, 1e6)
