"""`shoal config` end to end: the real command, its output shape, exit codes and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.corpus import SCHEMA

COMPOSE = """
name: shop
services:
  web:
    image: nginx
    ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp"]
    environment: [A=1, B]
    healthcheck:
      test: curl -f http://localhost/
      interval: 90s
      start_period: 1m30s
    shm_size: 1.5G
    deploy:
      resources: {limits: {memory: 512m}}
    volumes: [data:/data, ./html:/usr/share/nginx/html:ro]
    container_name: web
    deploy_note: &x 1
volumes:
  data: {}
"""


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text(COMPOSE.replace("    deploy_note: &x 1\n", ""))
    return tmp_path


def test_prints_the_normalised_project(project: Path) -> None:
    result = run("config", cwd=project, env={"B": "from-env"})
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    web = doc["services"]["web"]
    assert doc["name"] == "shop"
    assert web["ports"][0] == {
        "target": 80,
        "published": "8080",
        "host_ip": "127.0.0.1",
        "protocol": "tcp",
        "mode": "ingress",
    }
    assert [p["published"] for p in web["ports"][1:]] == ["9000", "9001"]
    assert web["environment"] == {"A": "1", "B": "from-env"}
    assert web["healthcheck"]["test"] == ["CMD-SHELL", "curl -f http://localhost/"]
    assert web["healthcheck"]["interval"] == "1m30s"
    assert web["healthcheck"]["start_period"] == "1m30s"
    assert web["shm_size"] == 1610612736
    assert int(web["deploy"]["resources"]["limits"]["memory"]) == 512 * 1024 * 1024
    assert web["networks"] == {"default": None}
    assert web["volumes"][1]["source"] == str(project / "html")
    assert web["volumes"][1]["read_only"] is True
    assert doc["networks"]["default"]["name"] == "shop_default"
    assert doc["volumes"]["data"]["name"] == "shop_data"
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def test_json_output_and_listings(project: Path) -> None:
    result = run("config", "--output", "json", cwd=project)
    assert json.loads(result.stdout)["services"]["web"]["image"] == "nginx"
    assert run("config", "--services", cwd=project).stdout.split() == ["web"]
    assert run("config", "--volumes", cwd=project).stdout.split() == ["data"]
    listing = run("config", "--services", "-o", "json", cwd=project).stdout
    assert json.loads(listing) == ["web"]


def test_several_files_name_and_env_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("services:\n  web:\n    image: ${IMG}\n")
    (tmp_path / "b.yaml").write_text("services:\n  web:\n    command: echo hi\n")
    (tmp_path / "vars.env").write_text("IMG=busybox\n")
    result = run(
        "config",
        "-f",
        "a.yaml",
        "-f",
        "b.yaml",
        "-n",
        "mine",
        "--env-file",
        "vars.env",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["name"] == "mine"
    assert doc["services"]["web"] == {
        "command": ["echo", "hi"],
        "image": "busybox",
        "networks": {"default": None},
    }


def test_invalid_input_exits_1_with_location(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    ports:\n      - 80\n      - '99999999'\n"
    )
    result = run("config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "compose.yaml:6:9" in result.stderr
    assert "Invalid containerPort: 99999999" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file(tmp_path: Path) -> None:
    result = run("config", "-f", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr and "not found" in result.stderr


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "version: '3'\nservices:\n  web:\n    image: x\n    container_name: web1\n"
        "    deploy: {replicas: 2}\n    environment: [A=$UNSET]\n"
    )
    result = run("config", "-n", "p", cwd=tmp_path)
    assert result.returncode == 0
    assert "container_name" in result.stderr
    assert "`version` is obsolete" in result.stderr
    assert 'The "UNSET" variable is not set' in result.stderr
    assert "warning" not in result.stdout


def test_help_lists_config() -> None:
    result = run("--help", cwd=Path.cwd())
    assert result.returncode == 0
    assert "config" in result.stdout
