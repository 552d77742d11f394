"""Autoscaling end to end: runc containers burning CPU under a quota scale their service up,
idle ones scale it back down after the cooldown, `shoal scale` moves the ceiling, a redeploy
resets it, and an invalid `x-shoal.autoscale` is reported as a warning event.

The burners spin while `/ctl/burn` exists in a directory bind-mounted from the test, so the
load is switched on and off from here. Samples are taken every second (SHOAL_AUTOSCALE_INTERVAL).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from shoal.model.cluster import Event
from tests.e2e.cluster import Cluster, cluster, needs_runc, shoal, wait_until
from tests.images.busybox import make_busybox_image

pytestmark = needs_runc

IMAGE = "localhost/test/busybox:1"
BURN = "while :; do if [ -e /ctl/burn ]; then :; else sleep 0.5; fi; done"
COMPOSE = """
name: auto
services:
  burner:
    image: {image}
    command: ["sh", "-c", "{burn}"]
    volumes: ["{ctl}:/ctl"]
    deploy:
      resources: {{limits: {{cpus: 0.1}}}}
      update_config: {{monitor: 1s}}
    x-shoal:
      autoscale: {{min: 1, max: 3, cpu: 50%, cooldown: 5s}}
"""
INVALID = f"""
name: wrong
services:
  idle:
    image: {IMAGE}
    command: [sleep, "300"]
    x-shoal:
      autoscale: {{max: 2, memory: 80%}}
"""
COOLDOWN = 5.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("autoscale")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOAL_AUTOSCALE_INTERVAL", "1")  # inherited by `shoal up`
        with cluster(root, "up", runtime="runc") as c:
            make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
            yield c


def replicas(c: Cluster) -> tuple[int, int]:
    """(desired, running) of auto/burner."""
    with c.client() as api:
        svc = api.service("auto", "burner")
        tasks = api.tasks("auto", "burner")
    return svc.replicas, sum(1 for t in tasks if t.status.state == "running")


def settle(c: Cluster, n: int, timeout: float) -> float:
    """Until auto/burner wants and runs `n` tasks; the time it took."""
    start = time.monotonic()
    wait_until(lambda: replicas(c) == (n, n), timeout=timeout, interval=0.2)
    return time.monotonic() - start


def autoscale_events(c: Cluster, stack: str = "auto", action: str = "autoscale") -> list[Event]:
    with c.client() as api:
        return [
            e
            for e in api.events()
            if e.type == "service" and e.action == action and e.stack == stack
        ]


def assert_descent(steps: list[Event], start: int, since: float) -> None:
    """`steps` go down from `start` to the floor (1), never up (no flapping), each at least a
    cooldown after the change before it (at `since`), on idle tasks."""
    assert steps, "no scale-down"
    counts = [start] + [int(e.attributes["to"]) for e in steps]
    assert [int(e.attributes["from"]) for e in steps] == counts[:-1]
    assert all(a > b for a, b in itertools.pairwise(counts)) and counts[-1] == 1, counts
    times = [since] + [e.time for e in steps]
    assert all(b - a >= COOLDOWN for a, b in itertools.pairwise(times)), times
    assert all(float(e.attributes["utilisation"]) < 0.5 for e in steps)


def services_row(c: Cluster) -> dict[str, str]:
    listed = shoal(c, "services", "auto", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    return dict(row)


def test_scales_up_under_load_and_down_after_the_cooldown(node: Cluster, tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    burn = ctl / "burn"
    (tmp_path / "compose.yaml").write_text(COMPOSE.format(image=IMAGE, burn=BURN, ctl=ctl))
    deployed = shoal(
        node, "deploy", "-f", "compose.yaml", "--wait", "--timeout", "60", cwd=tmp_path
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert replicas(node) == (1, 1)
    assert services_row(node)["replicas"] == "1/1 (auto 1-3)"

    # Load: each burner uses its whole quota (100 % of 0.1 cores, twice the 50 % target; a
    # small quota so that other work on the machine does not starve it below the target).
    burn.touch()
    took = settle(node, 3, timeout=25)
    ups = autoscale_events(node)
    assert [(e.attributes["from"], e.attributes["to"]) for e in ups][-1][1] == "3"
    first = ups[0].attributes
    assert first["metric"] == "cpu" and first["from"] == "1" and first["measured"] == "1"
    utilisation = float(first["utilisation"])
    assert utilisation > 0.55 and float(first["target"]) == 0.5
    # ceil(1 × utilisation / 0.5): 2 at a full quota, 3 when a sample reads a little above it
    assert int(first["to"]) == min(math.ceil(utilisation / 0.5 - 1e-9), 3)
    assert "cpu" in ups[0].message and "target 50%" in ups[0].message
    time.sleep(2)
    assert replicas(node) == (3, 3), "must stay at the ceiling"
    print(f"1 → 3 under load in {took:.1f}s")

    # Idle: back to the floor, not before the cooldown since the last change.
    burn.unlink()
    settle(node, 1, timeout=30)
    assert_descent(autoscale_events(node)[len(ups) :], start=3, since=ups[-1].time)

    # `shoal scale` above the ceiling: replicas now, and the ceiling moves with them.
    before = len(autoscale_events(node))
    scaled = shoal(node, "scale", "auto/burner=4")
    assert scaled.returncode == 0, scaled.stderr
    with node.client() as api:
        svc = api.service("auto", "burner")
    assert svc.replicas == 4 and svc.autoscale is not None and svc.autoscale.max == 4
    assert services_row(node)["autoscale"] == "1-4"
    (scale,) = autoscale_events(node, action="scale")
    settle(node, 1, timeout=30)  # idle: down to the floor again, a cooldown after the scale
    assert_descent(autoscale_events(node)[before:], start=4, since=scale.time)
    burn.touch()
    settle(node, 4, timeout=25)  # the new ceiling, above the file's 3
    assert autoscale_events(node)[-1].attributes["to"] == "4"
    burn.unlink()
    time.sleep(2.5)  # samples of idle tasks only, so the autoscaler agrees with the file

    # A redeploy of the file resets the range (and replicas) to the file's.
    again = shoal(node, "deploy", "-f", "compose.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert services_row(node)["autoscale"] == "1-3"
    settle(node, 1, timeout=15)
    assert services_row(node)["replicas"] == "1/1 (auto 1-3)"
    for e in autoscale_events(node):
        print(f"{e.time:.1f} {e.message}")
    with node.client() as api:
        api.remove_stack("auto")


def test_invalid_config_is_refused_at_deploy(node: Cluster, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(INVALID)
    deployed = shoal(node, "deploy", "-f", "compose.yaml", cwd=tmp_path)
    assert deployed.returncode == 2, deployed.stdout + deployed.stderr
    assert "services.idle.x-shoal.autoscale.memory" in deployed.stderr
    assert "no memory limit" in deployed.stderr
    with node.client() as api:
        assert "wrong" not in {s["name"] for s in api.stacks()}
