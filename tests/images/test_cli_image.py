"""`shoal image …` against a local store: import, ls, inspect, tag, rm, prune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.image import image
from shoal.images.content import ContentStore
from tests.images.busybox import busybox_rootfs_tar


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(image, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_image_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_DATA_DIR", str(tmp_path / "data"))
    tar = tmp_path / "busybox.tar"
    tar.write_bytes(busybox_rootfs_tar())
    out = run("import", str(tar), "bb:1", "--cmd", "httpd -f -p 80", "-e", "A=1", "-w", "/www")
    assert out.strip() == "docker.io/library/bb:1"
    store = ContentStore(tmp_path / "data" / "agent" / "images")
    assert list(store.list_tags()) == ["docker.io/library/bb:1"]

    rows = json.loads(run("ls", "--output", "json"))
    assert [r["name"] for r in rows] == ["bb:1"] and rows[0]["size"] > 1_000_000
    assert "bb:1" in run("ls")

    doc = json.loads(run("inspect", "bb:1"))
    run_config = doc["config"]["config"]
    assert run_config["Cmd"] == ["httpd", "-f", "-p", "80"] and run_config["WorkingDir"] == "/www"
    assert run_config["Env"][0].startswith("PATH=") and run_config["Env"][1] == "A=1"
    assert doc["digest"] == store.resolve("bb:1")

    run("tag", "bb:1", "registry.local:5000/bb:2")
    assert set(store.list_tags()) == {"docker.io/library/bb:1", "registry.local:5000/bb:2"}
    assert "untagged" in run("rm", "bb:1")
    assert "freed 0B" in run("prune")
    run("rm", "registry.local:5000/bb:2")
    assert "freed 0B" not in run("prune")
    assert list(store.blobs.iterdir()) == []


def test_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(image, ["inspect", "nope", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: image nope" in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    result = CliRunner().invoke(image, ["import", str(empty), "--root", str(tmp_path)])
    assert result.exit_code == 1 and "needs a name" in result.output
