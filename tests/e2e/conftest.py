"""Fixtures for whole-system tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, cluster


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, "up") as c:
        yield c


@pytest.fixture
def split(tmp_path: Path) -> Iterator[Cluster]:
    """Server and agent as separate processes (so each can be killed alone)."""
    with cluster(tmp_path, "split") as c:
        c.start_server()
        c.start_agent()
        yield c
