"""`shoal image push` / `pull` through the real CLI against a real registry on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from tests.images.busybox import make_busybox_image
from tests.images.registry_server import RegistryServer


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", "image", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_push_then_pull_into_another_store(registry: RegistryServer, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    make_busybox_image(ContentStore(first), "busybox:test")
    ref = f"{registry.host}/demo/busybox:1"
    assert shoal("tag", "busybox:test", ref, "--root", str(first)).returncode == 0
    pushed = shoal("push", ref, "--root", str(first))
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    pulled = shoal("pull", ref, "--root", str(second))
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert "pulled" in pulled.stdout
    listing = json.loads(shoal("ls", "-o", "json", "--root", str(second)).stdout)
    assert any(ref.split("/", 1)[1].split(":")[0] in json.dumps(row) for row in listing)


def test_pull_of_a_missing_image_is_a_clear_error(registry: RegistryServer, tmp_path: Path) -> None:
    result = shoal("pull", f"{registry.host}/nope/missing:1", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr
