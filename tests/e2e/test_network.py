"""Networking end to end: real runc containers on CNI bridges, names through shoal's DNS,
service VIPs, published ports, isolation between networks (one cluster for the module)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.images.content import ContentStore
from shoal.network.firewall import agent_prefix
from tests.e2e.cluster import Cluster, cluster, free_port, needs_cni, shoal, wait_until
from tests.images.busybox import make_busybox_image

pytestmark = needs_cni

IMAGE = "localhost/test/busybox:1"
HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p {port} -h /www"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("net")
    with cluster(root, "up", runtime="runc") as c:
        make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
        yield c


def deploy(c: Cluster, tmp: Path, name: str, compose: str) -> None:
    (tmp / f"{name}.yaml").write_text(compose)
    result = shoal(c, "deploy", "-f", f"{name}.yaml", "--wait", "--timeout", "60", cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr


def remove(c: Cluster, name: str) -> None:
    with c.client() as api:
        api.remove_stack(name)
        wait_until(lambda: name not in {s["name"] for s in api.stacks()}, timeout=30)


def task_of(c: Cluster, stack: str, service: str) -> Any:
    with c.client() as api:
        return next(
            t for t in api.tasks(stack) if t.service == service and t.status.state == "running"
        )


def task_list(c: Cluster, stack: str) -> list[Any]:
    with c.client() as api:
        return api.tasks(stack)


def run_in(c: Cluster, stack: str, service: str, script: str) -> tuple[int, str]:
    task = task_of(c, stack, service)
    with c.client() as api:
        result = api.exec(task.id, ["sh", "-c", script])
    return result["exit_code"], result["stdout"] + result["stderr"]


def fetch(target: str) -> str:
    return f"timeout 3 wget -qO- http://{target}/"


def test_same_network_by_name_other_network_isolated(node: Cluster, tmp_path: Path) -> None:
    """The conformance scenarios simple_network and different_networks, with busybox."""
    deploy(
        node,
        tmp_path,
        "nets",
        f"""
name: nets
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=8080)}"]
    networks: [front]
    deploy: {{update_config: {{monitor: 1s}}}}
  client:
    image: {IMAGE}
    command: [sleep, "300"]
    networks: [front]
    deploy: {{update_config: {{monitor: 1s}}}}
  outsider:
    image: {IMAGE}
    command: [sleep, "300"]
    networks: [back]
    deploy: {{update_config: {{monitor: 1s}}}}
networks:
  front:
  back:
""",
    )
    try:
        web = task_of(node, "nets", "web")
        web_ip = web.networks[0].address
        for name in ("web:8080", "web.nets:8080", "web.nets.shoal:8080", f"{web_ip}:8080"):
            code, out = run_in(node, "nets", "client", fetch(name))
            assert code == 0 and "nets-web-1" in out, (name, out)
        code, out = run_in(node, "nets", "client", "cat /etc/resolv.conf /etc/hosts")
        assert "search nets.shoal shoal" in out and "nameserver 10." in out
        # The container reaches the API through its gateway, with a token for its stack only.
        with node.client() as api:
            api.request("PUT", "/v1/kv/stacks/nets/greeting", content=b"hello-kv")
            api.request("PUT", "/v1/kv/stacks/other/secret", content=b"not-yours")
        get = 'timeout 5 wget -qO- --header "Authorization: Bearer $(cat $SHOAL_TOKEN_FILE)" '
        code, out = run_in(
            node, "nets", "client", get + "$SHOAL_ADDR/v1/kv/stacks/nets/greeting?raw=true"
        )
        assert code == 0 and out == "hello-kv", out
        for path in ("/v1/kv/stacks/other/secret", "/v1/stacks"):
            code, out = run_in(node, "nets", "client", get + f"$SHOAL_ADDR{path}")
            assert code != 0 and "403" in out, (path, out)
        # The outsider cannot resolve web, and cannot reach it by address either.
        code, out = run_in(node, "nets", "outsider", "nslookup web")
        assert code != 0 or "NXDOMAIN" in out or "can't find" in out, out
        code, out = run_in(node, "nets", "outsider", fetch(f"{web_ip}:8080"))
        assert code != 0, out
    finally:
        remove(node, "nets")


def test_vip_follows_scaling_without_failed_requests(node: Cluster, tmp_path: Path) -> None:
    loop = (
        "while true; do "
        "if out=$$(timeout 3 wget -qO- http://web:8080/); then echo OK $$out; "
        "else echo FAIL; fi; sleep 0.05; done"
    )
    compose = f"""
name: scl
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=8080)}"]
    deploy: {{replicas: {{n}}, update_config: {{monitor: 1s}}}}
  client:
    image: {IMAGE}
    command: ["sh", "-c", "{loop}"]
    deploy: {{update_config: {{monitor: 1s}}}}
"""
    deploy(node, tmp_path, "scl", compose.replace("{n}", "1"))
    try:
        with node.client() as api:
            for replicas in (5, 2):
                api.scale("scl", "web", replicas)
                wait_until(
                    lambda n=replicas: (
                        sum(
                            1
                            for t in api.tasks("scl")
                            if t.service == "web" and t.status.state == "running"
                        )
                        == n
                    ),
                    timeout=30,
                )
                time.sleep(2)
            client = task_of(node, "scl", "client")
            lines = [line["text"] for line in api.logs(client.id)]
        # The client may start before web's first task is served; from then on, nothing fails.
        first = next(i for i, line in enumerate(lines) if line.startswith("OK"))
        lines = lines[first:]
        oks = [line for line in lines if line.startswith("OK")]
        assert len(oks) > 40, lines[-5:]
        assert not [line for line in lines if line.startswith("FAIL")], lines
        served_by = {line.split()[1] for line in oks}
        assert {f"scl-web-{i}" for i in range(1, 6)} <= served_by, served_by
    finally:
        remove(node, "scl")


def test_dnsrr_srv_aliases_tasks_and_internal(node: Cluster, tmp_path: Path) -> None:
    deploy(
        node,
        tmp_path,
        "dns",
        f"""
name: dns
services:
  db:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=5432)}"]
    expose: ["5432"]
    networks:
      back: {{aliases: [database]}}
    deploy: {{replicas: 2, endpoint_mode: dnsrr, update_config: {{monitor: 1s}}}}
  app:
    image: {IMAGE}
    command: [sleep, "300"]
    hostname: appbox
    networks: [back, front]
    extra_hosts: ["gateway.test=10.9.9.9"]
    deploy: {{update_config: {{monitor: 1s}}}}
networks:
  back: {{internal: true}}
  front:
""",
    )
    try:
        with node.client() as api:
            db_ips = sorted(
                t.networks[0].address
                for t in api.tasks("dns")
                if t.service == "db" and t.status.state == "running"
            )
        for name in ("db", "database", "tasks.db"):
            code, out = run_in(node, "dns", "app", f"nslookup {name}")
            assert code == 0 and all(ip in out for ip in db_ips), (name, out)
        code, out = run_in(node, "dns", "app", "nslookup -type=srv _5432._tcp.db.dns.shoal")
        assert code == 0 and "5432" in out, out
        code, out = run_in(node, "dns", "app", "nslookup nothing.dns.shoal")
        assert "NXDOMAIN" in out or code != 0, out
        code, out = run_in(node, "dns", "app", "hostname; cat /etc/hosts")
        assert "appbox" in out and "10.9.9.9\tgateway.test" in out
        # db is only on the internal network: no default route out of it.
        code, out = run_in(node, "dns", "db", "ip route")
        assert "default" not in out, out
        code, out = run_in(node, "dns", "app", f"{fetch('db:5432')}")
        assert code == 0 and "dns-db-" in out
    finally:
        remove(node, "dns")


UDP_ONCE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9000))
print(s.recvfrom(100)[0].decode(), flush=True)
"""


def test_published_tcp_and_udp_ports_and_clashes(node: Cluster, tmp_path: Path) -> None:
    tcp, udp = free_port(), free_port()
    deploy(
        node,
        tmp_path,
        "pub",
        f"""
name: pub
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=80)}"]
    ports: ["127.0.0.1:{tcp}:80"]
    deploy: {{replicas: 2, update_config: {{monitor: 1s}}}}
  sink:
    image: {IMAGE}
    command: [sleep, "300"]
    ports: ["{udp}:9000/udp"]
    deploy: {{update_config: {{monitor: 1s}}}}
""",
    )
    try:
        seen = set()
        for _ in range(30):
            response = httpx.get(f"http://127.0.0.1:{tcp}/", timeout=3)
            assert response.status_code == 200
            seen.add(response.text.strip())
        assert seen == {"pub-web-1", "pub-web-2"}

        # busybox has no UDP server: listen with the host's Python inside the task's netns.
        sink = task_of(node, "pub", "sink")
        listener = subprocess.Popen(
            ["ip", "netns", "exec", f"shoal-{sink.id}", sys.executable, "-c", UDP_ONCE],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:

            def delivered() -> bool:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"ping-udp", ("127.0.0.1", udp))
                return listener.poll() is not None

            wait_until(delivered, timeout=15, interval=0.2)
            assert listener.communicate(timeout=5)[0].strip() == "ping-udp"
        finally:
            listener.kill()
            listener.wait()
        # Another stack asking for the same port is refused at deploy, with the owner named.
        (tmp_path / "clash.yaml").write_text(
            f"""
name: clash
services:
  web:
    image: {IMAGE}
    ports: ["{tcp}:80"]
"""
        )
        result = shoal(node, "deploy", "-f", "clash.yaml", cwd=tmp_path)
        assert result.returncode != 0
        assert f"port {tcp}/tcp is already published by pub/web" in result.stderr
    finally:
        remove(node, "pub")


def test_nothing_is_left_behind(node: Cluster) -> None:
    """After the stacks above are gone: no netns, no bridge, no iptables chain of this agent."""
    net = node.data / "agent" / "net"
    wait_until(lambda: not list((net / "tasks").glob("*.json")), 20)
    wait_until(lambda: json.loads((net / "bridges.json").read_text()) == {}, 20)
    prefix = agent_prefix(str((node.data / "agent").resolve()))
    wait_until(lambda: f":{prefix}-" not in run_text("iptables-save"), 20)
    assert "shoal-" not in run_text("ip", "netns", "list")
    assert " shl" not in run_text("ip", "-o", "link")


def run_text(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_networking_survives_a_crash_of_shoal(tmp_path: Path) -> None:
    """kill -9 of `shoal up`: the kernel keeps serving published ports and VIPs meanwhile; a new
    `shoal up` re-adopts the tasks and DNS answers again, with the same addresses."""
    port = free_port()
    with cluster(tmp_path, "up", runtime="runc") as c:
        make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
        deploy(
            c,
            tmp_path,
            "crash",
            f"""
name: crash
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=80)}"]
    ports: ["127.0.0.1:{port}:80"]
    deploy: {{update_config: {{monitor: 1s}}}}
  client:
    image: {IMAGE}
    command: [sleep, "300"]
    deploy: {{update_config: {{monitor: 1s}}}}
""",
        )
        with c.client() as api:
            before = {t.id: t.networks for t in api.tasks("crash")}
        c.kill9("up")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).text.strip() == "crash-web-1"
        c.start_up()
        wait_until(lambda: run_in(c, "crash", "client", fetch("web"))[0] == 0, timeout=30)
        code, out = run_in(c, "crash", "client", "nslookup tasks.web")
        with c.client() as api:
            after = {t.id: t.networks for t in api.tasks("crash")}
        web = next(t for t in task_list(c, "crash") if t.service == "web")
        assert code == 0 and web.networks[0].address in out, out
        assert after == before
