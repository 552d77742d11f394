"""What `shoal deploy` reads on the client: each secret's/config's value, by its cluster name;
bad sources named; configs' inline content left out of the document it sends."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from shoal.cli.secret import read_values, without_values
from shoal.compose.loader import LoadOptions, load_project
from shoal.model.compose import ComposeProject, to_compose_dict
from shoal.model.errors import Invalid

COMPOSE = """
name: shop
services:
  web:
    image: busybox
    secrets: [db, token, ext]
    configs: [site, conf]
secrets:
  db: {file: ./db.txt}
  token: {environment: SHOP_TOKEN}
  ext: {external: true}
configs:
  site: {content: "listen 80"}
  conf: {file: ./conf.txt, name: shared-conf}
"""


def load(tmp_path: Path, compose: str, environ: dict[str, str]) -> ComposeProject:
    (tmp_path / "compose.yaml").write_text(compose)
    options = LoadOptions(files=[tmp_path / "compose.yaml"], environ=environ)
    return load_project(options).project


def test_values_by_cluster_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db.txt").write_bytes(b"pw\x00")
    (tmp_path / "conf.txt").write_text("a=1")
    monkeypatch.setenv("SHOP_TOKEN", "tok")
    project = load(tmp_path, COMPOSE, {})
    values = {(v["kind"], v["name"]): base64.b64decode(v["data"]) for v in read_values(project)}
    assert values == {
        ("secret", "shop_db"): b"pw\x00",
        ("secret", "shop_token"): b"tok",
        ("config", "shop_site"): b"listen 80",
        ("config", "shared-conf"): b"a=1",
    }
    doc = without_values(to_compose_dict(project))
    assert "content" not in doc["configs"]["site"]
    assert doc["secrets"]["db"]["file"] == str(tmp_path / "db.txt")


def test_bad_sources_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    (tmp_path / "conf.txt").write_text("a=1")
    project = load(tmp_path, COMPOSE, {})
    missing = f"secrets.db.file: {tmp_path / 'db.txt'} does not exist"
    with pytest.raises(Invalid, match=re.escape(missing)):
        read_values(project)
    (tmp_path / "db.txt").write_text("pw")
    with pytest.raises(
        Invalid, match=r"secrets\.token\.environment: variable SHOP_TOKEN is not set"
    ):
        read_values(project)
