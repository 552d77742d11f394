"""A one-node cluster keeps a stack running: deploy, converge, logs, scale, restart, remove."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from shoal.compose.loader import LoadOptions, load_project
from shoal.model.compose import to_compose_dict
from shoal.model.errors import Conflict
from tests.e2e.cluster import Cluster, wait_until

STACK = """
name: shop
services:
  web:
    image: none
    command: ["sh", "-c", "echo web up; exec sleep 300"]
    deploy:
      replicas: 3
  once:
    image: none
    command: ["sh", "-c", "echo job ran"]
    deploy:
      mode: replicated-job
      replicas: 2
  flaky:
    image: none
    command: ["sh", "-c", "echo oops >&2; exit 3"]
    deploy:
      restart_policy: {condition: on-failure, delay: 100ms, max_attempts: 2}
"""


def project(tmp: Path, text: str, **env: str) -> dict[str, Any]:
    path = tmp / "compose.yaml"
    path.write_text(text)
    loaded = load_project(LoadOptions(files=[path], environ=env))
    return to_compose_dict(loaded.project)


def cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOAL_ADDR": c.addr, "SHOAL_DATA_DIR": str(c.data)}
    env.pop("SHOAL_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, env=env, timeout=60
    )


def active(c: Cluster, stack: str) -> list[Any]:
    with c.client() as api:
        return [t for t in api.tasks(stack) if t.desired_state == "running"]


def test_token_file_and_auth(one_node: Cluster) -> None:
    token_file = one_node.data / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    base = f"http://{one_node.addr}"
    assert httpx.get(f"{base}/v1/health").status_code == 200
    assert httpx.get(f"{base}/v1/openapi.json").status_code == 200  # public, like health
    for path in ("/v1/stacks", "/v1/tasks", "/v1/nodes", "/v1/events", "/v1/volumes"):
        response = httpx.get(base + path)
        assert response.status_code == 401, path
        assert response.json()["error"]["kind"] == "Unauthorized"
    bad = httpx.get(f"{base}/v1/stacks", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_deploy_converges_and_reports(one_node: Cluster, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(STACK)
    result = cli(
        one_node, "deploy", "-f", str(tmp_path / "compose.yaml"), "--wait", "--timeout", "30"
    )
    # flaky exhausts its restarts: deploy --wait must fail, naming the service
    assert result.returncode == 1, result.stderr
    assert "shop/flaky" in result.stderr and "exit" in result.stderr
    expected = {"web": "converged", "once": "converged", "flaky": "failed"}

    def states() -> dict[str, str]:
        with one_node.client() as api:
            return {s["name"]: s["state"] for s in api.stack_status("shop")["services"]}

    wait_until(lambda: states() == expected, timeout=15)

    ps = json.loads(cli(one_node, "ps", "shop", "--all", "-o", "json").stdout)
    required = {
        "id",
        "stack",
        "service",
        "slot",
        "node",
        "state",
        "desired_state",
        "image",
        "container_id",
        "addresses",
        "ports",
        "health",
        "exit_code",
        "error",
        "updated_at",
    }
    assert ps and required <= set(ps[0])
    web = [t for t in ps if t["service"] == "web" and t["state"] == "running"]
    assert sorted(t["slot"] for t in web) == [1, 2, 3]
    flaky = [t for t in ps if t["service"] == "flaky"]
    # max_attempts counts restarts (Swarm): the first run plus two restarts
    assert len(flaky) == 3 and all(t["exit_code"] == 3 for t in flaky)
    once = [t for t in ps if t["service"] == "once" and t["state"] == "complete"]
    assert len(once) == 2

    logs = cli(one_node, "logs", "shop/web")
    assert logs.stdout.count("web up") == 3
    flaky_logs = cli(one_node, "logs", flaky[0]["id"])
    assert "oops" in flaky_logs.stderr

    events = cli(one_node, "events", "-o", "json").stdout.splitlines()
    kinds = {(json.loads(e)["type"], json.loads(e)["action"]) for e in events}
    assert ("service", "create") in kinds and ("task", "failed") in kinds


def test_scale_and_remove(one_node: Cluster, tmp_path: Path) -> None:
    with one_node.client() as api:
        api.deploy("shop", project(tmp_path, STACK.split("  once:")[0]))
        wait_until(
            lambda: len([t for t in active(one_node, "shop") if t.status.state == "running"]) == 3
        )
        assert cli(one_node, "scale", "shop/web=5").returncode == 0
        wait_until(
            lambda: (
                sorted(t.slot for t in active(one_node, "shop") if t.status.state == "running")
                == [1, 2, 3, 4, 5]
            )
        )
        api.scale("shop", "web", 1)
        wait_until(lambda: [t.slot for t in active(one_node, "shop")] == [1])
        pids = one_node.workload_pids()
        assert cli(one_node, "rm", "shop", "--wait").returncode == 0
        assert api.stacks() == []
        assert api.tasks(all=True) == []
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=15)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_dry_run_shows_a_field_diff(one_node: Cluster, tmp_path: Path) -> None:
    base = "name: d\nservices:\n  web:\n    image: a\n    command: [sleep, '100']\n"
    with one_node.client() as api:
        api.deploy("d", project(tmp_path, base))
        plan = api.deploy("d", project(tmp_path, base.replace("image: a", "image: b")), True)
        assert plan["applied"] is False
        web = plan["plan"]["services"][0]
        assert web["action"] == "update"
        assert {"path": "image", "old": "a", "new": "b"} in web["changes"]
        assert api.service("d", "web").spec.image == "a"  # nothing changed


def test_bad_input_is_4xx(one_node: Cluster) -> None:
    base = f"http://{one_node.addr}"
    headers = {"Authorization": f"Bearer {(one_node.data / 'token').read_text().strip()}"}
    cases = [
        ("POST", "/v1/stacks/shop/deploy", {"project": {"services": {"w": {"image": 3}}}}),
        ("POST", "/v1/stacks/Bad Name/deploy", {"project": {}}),
        ("POST", "/v1/stacks/shop/deploy", {"nope": 1}),
        ("POST", "/v1/services/shop/web/scale", {"replicas": -1}),
        ("GET", "/v1/tasks/does-not-exist", None),
        ("PATCH", "/v1/nodes/nope", {"availability": "sideways"}),
    ]
    for method, path, body in cases:
        response = httpx.request(method, base + path, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        error = response.json()["error"]
        assert error["message"], path


def test_concurrent_deploys_never_mix(one_node: Cluster, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def version(v: str) -> dict[str, Any]:
        services = "".join(
            f"  s{i}:\n    image: img-{v}\n    command: [sleep, '300']\n" for i in range(6)
        )
        return project(tmp_path, f"name: mix\nservices:\n{services}")

    docs = {"a": version("a"), "b": version("b")}
    for _ in range(5):

        def deploy(v: str) -> str:
            with one_node.client() as api:
                try:
                    api.deploy("mix", docs[v])
                    return "ok"
                except Conflict:
                    return "conflict"

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(deploy, ["a", "b"]))
        assert "ok" in outcomes
        with one_node.client() as api:
            images = {s.spec.image for s in api.services("mix")}
        assert len(images) == 1, images  # all from one deploy, never a mix


def test_openapi_served(one_node: Cluster) -> None:
    doc = httpx.get(f"http://{one_node.addr}/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v1/stacks/{name}/deploy" in doc["paths"]
