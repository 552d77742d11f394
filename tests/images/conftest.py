"""Fixtures for image tests: a store, and container dirs whose mounts are always released."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from shoal.images.rootfs import release_rootfs
from tests.images.layers import mounts_under


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "images")


@pytest.fixture
def container_dirs(tmp_path: Path) -> Iterator[list[Path]]:
    """Append every container dir a test mounts into; all are released, even on failure."""
    dirs: list[Path] = []
    yield dirs
    for container_dir in dirs:
        release_rootfs(container_dir)
    assert mounts_under(tmp_path) == []
