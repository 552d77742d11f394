"""Benchmark: place 10,000 pending tasks of 100 services onto 5,000 (and 1,000) simulated nodes.

Goal: >= 2,000 placements/s in one process. Prints one JSON document: placements/s, seconds,
spread quality (per service, max - min tasks per eligible node; max and mean over services,
plus the same across the first preference's label values), peak traced memory of one
`schedule` call and the process's peak RSS.

Peers cannot be run in isolation here (kube-scheduler needs an API server and etcd, Swarm's
scheduler lives inside dockerd's manager), so `reference` quotes their published numbers.
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from typing import Any

from shoal.model.cluster import (
    Availability,
    Node,
    NodeDescription,
    NodeResources,
    NodeSpec,
    NodeState,
    NodeStatus,
    Task,
    TaskState,
    TaskStatus,
)
from shoal.model.compose_service import ServiceSpec
from shoal.scheduler import Snapshot, schedule
from shoal.scheduler.filters import STATIC_FILTERS, node_attribute
from shoal.scheduler.snapshot import build_views, read_requirements

GIB = 1 << 30
SERVICES = 100
TASKS = 10_000

REFERENCE = {
    "source": "published by the projects themselves, not measured here",
    "kube_scheduler": {
        "placements_per_s": 680,
        "note": "scheduler_perf (Kubernetes) SchedulingBasic threshold at 5,000 nodes",
    },
    "nomad_c1m": {
        "placements_per_s": 3750,
        "note": "HashiCorp's C1M challenge (2016): 1M containers on 5,000 hosts, 5 servers",
    },
}


def make_nodes(count: int, rng: random.Random) -> list[Node]:
    nodes = []
    for i in range(count):
        down = rng.random() < 0.01
        drained = rng.random() < 0.01
        nodes.append(
            Node(
                id=f"node-{i:05d}",
                spec=NodeSpec(
                    labels={
                        "zone": "abc"[i % 3],
                        "rack": f"r{rng.randrange(10)}",
                        "disk": rng.choice(["ssd", "hdd"]),
                    },
                    availability=Availability.DRAIN if drained else Availability.ACTIVE,
                ),
                description=NodeDescription(
                    hostname=f"host-{i}",
                    arch="aarch64" if rng.random() < 0.05 else "x86_64",
                    resources=NodeResources(
                        nano_cpus=rng.choice([2, 4, 8, 16]) * 1_000_000_000,
                        memory_bytes=rng.choice([4, 8, 16, 32, 64]) * GIB,
                    ),
                    runtimes=["runc"],
                ),
                status=NodeStatus(state=NodeState.DOWN if down else NodeState.READY),
            )
        )
    return nodes


def make_spec(i: int) -> ServiceSpec:
    placement: dict[str, Any] = {}
    if i % 4 == 0:
        placement["constraints"] = ["node.labels.zone==a"]
    if i % 7 == 0:
        placement["constraints"] = ["node.labels.disk==ssd", "node.role!=manager"]
        placement["preferences"] = [{"spread": "node.labels.zone"}, {"spread": "node.labels.rack"}]
    elif i % 5 == 0:
        placement["preferences"] = [{"spread": "node.labels.zone"}]
    if i % 10 == 0:
        placement["max_replicas_per_node"] = 1
    deploy: dict[str, Any] = {"replicas": TASKS // SERVICES, "placement": placement}
    if i % 3 != 0:
        deploy["resources"] = {
            "reservations": {"cpus": [0.25, 0.5, 1.0][i % 3], "memory": f"{256 << (i % 3)}M"}
        }
    raw: dict[str, Any] = {"image": f"example/svc{i}", "deploy": deploy}
    if i % 13 == 0:
        raw["platform"] = "linux/arm64"
    return ServiceSpec.model_validate(raw)


def make_tasks(rng: random.Random) -> list[Task]:
    tasks = []
    pending = TaskStatus(state=TaskState.PENDING)
    for i in range(SERVICES):
        spec = make_spec(i)  # one spec object per service: building 10,000 specs is slow
        for slot in range(TASKS // SERVICES):
            tasks.append(
                Task(
                    id=f"task-{i:03d}-{slot:03d}",
                    stack="bench",
                    service=f"svc{i}",
                    service_id=f"svc-{i:03d}",
                    slot=slot + 1,
                    spec_version=1,
                    spec=spec,
                    status=pending,
                )
            )
    rng.shuffle(tasks)
    return tasks


def spread_quality(snapshot: Snapshot, placed: dict[str, str]) -> dict[str, Any]:
    views = build_views(Snapshot(snapshot.nodes, [], [], snapshot.now))
    by_service: dict[str, list[Task]] = {}
    for task in snapshot.pending:
        by_service.setdefault(task.service_id, []).append(task)
    node_spread, pref_spread = [], []
    for sid, tasks in by_service.items():
        req = read_requirements(sid, tasks[0].spec)
        eligible = [
            v
            for v in views
            if v.ready and v.active and all(f(req, v) is None for f in STATIC_FILTERS)
        ]
        counts = Counter(placed[t.id] for t in tasks if t.id in placed)
        per_node = [counts.get(v.id, 0) for v in eligible]
        node_spread.append(max(per_node) - min(per_node))
        if req.preferences:
            per_value: Counter[str] = Counter()
            for v in eligible:
                per_value[node_attribute(v, req.preferences[0]) or ""] += counts.get(v.id, 0)
            pref_spread.append(max(per_value.values()) - min(per_value.values()))
    return {
        "node_max_minus_min_max": max(node_spread),
        "node_max_minus_min_mean": round(statistics.fmean(node_spread), 3),
        "preference_max_minus_min_max": max(pref_spread),
        "preference_max_minus_min_mean": round(statistics.fmean(pref_spread), 3),
        "note": "eligible = ready, active, passing constraints/platform; nodes filled by other "
        "services' reservations count too, so over-subscribed runs show larger gaps",
    }


def run(node_count: int, repeats: int = 3) -> dict[str, Any]:
    rng = random.Random(42)
    nodes = make_nodes(node_count, rng)
    pending = make_tasks(rng)
    snapshot = Snapshot(nodes=nodes, tasks=pending, pending=pending, now=0.0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decisions = schedule(snapshot)
        times.append(time.perf_counter() - t0)
    best = min(times)
    placed = {d.task_id: d.node_id for d in decisions if d.node_id is not None}
    tracemalloc.start()
    schedule(snapshot)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "nodes": node_count,
        "tasks": len(pending),
        "services": SERVICES,
        "placed": len(placed),
        "unplaced": len(pending) - len(placed),
        "seconds_best": round(best, 4),
        "seconds_median": round(statistics.median(times), 4),
        "placements_per_s": round(len(pending) / best),
        "spread": spread_quality(snapshot, placed),
        "schedule_peak_traced_mib": round(peak / (1 << 20), 2),
    }


def main() -> None:
    results = [run(5_000), run(1_000)]
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "benchmark": "scheduler",
        "python": sys.version.split()[0],
        "goal_placements_per_s": 2000,
        "results": results,
        "process_peak_rss_mib": round(rss_kib / 1024, 1),
        "reference": REFERENCE,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
