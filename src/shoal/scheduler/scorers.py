"""Scorers: how good a suitable node is for a task, each normalised to 0..1 (1 is best).

Candidates are ranked in tiers, compared in order, as Swarm does:

1. placement preferences (`spread: node.labels.zone`, nested in the order written): the label
   value whose nodes hold the fewest tasks of the service wins (`preference_score`; the nested
   walk lives in `placement`);
2. spread of the service: fewer of its tasks on the node is better (`spread_score`);
3. the weighted `node_score`: free CPU and memory fractions left after placing the task, and
   fewest tasks of any service (so services do not all pile onto the lowest-id nodes);
4. the node id, so equal nodes are chosen deterministically.

Tiers rather than one weighted sum because a sum lets a large empty node take a second
replica of a service while a small node has none, which breaks "max - min <= 1 per service".
Only tier 3 is weighted, through `Weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.scheduler.snapshot import NodeView


@dataclass(frozen=True, slots=True)
class Weights:
    """Relative weights of the parts of `node_score` (need not sum to 1)."""

    cpu: float = 1.0
    memory: float = 1.0
    tasks: float = 1.0


DEFAULT_WEIGHTS = Weights()


def spread_score(count: int) -> float:
    """Tasks of the service already on the node → 1 for none, towards 0 for many."""
    return 1.0 / (1 + count)


def preference_score(count: int) -> float:
    """Tasks of the service under one label value → 1 for none, towards 0 for many."""
    return 1.0 / (1 + count)


def free_fraction(free: int, capacity: int) -> float:
    if capacity <= 0:
        return 0.0  # a node that reports no capacity is no emptier than a full one
    return min(max(free / capacity, 0.0), 1.0)


def node_score(
    view: NodeView, weights: Weights = DEFAULT_WEIGHTS, nano_cpus: int = 0, memory: int = 0
) -> float:
    """Weighted least-allocated score of a node once a task reserving this much is on it, 0..1.

    The task's own request is included (as Kubernetes' LeastAllocated does), so a 1GiB task
    prefers the 16GiB node over the 4GiB one even when both are empty.
    """
    total = weights.cpu + weights.memory + weights.tasks
    if total <= 0:
        return 0.0
    score = (
        weights.cpu * free_fraction(view.free_cpu - nano_cpus, view.cap_cpu)
        + weights.memory * free_fraction(view.free_mem - memory, view.cap_mem)
        + weights.tasks / (2 + view.tasks)
    )
    return score / total


class Ranker:
    """Sort keys of candidates for one group of tasks (one service, one request): smaller wins.

    Key: (tasks of the service on the node, -node_score, node id, index). The raw count
    stands in for `spread_score` (same order, exact integers).
    """

    __slots__ = ("memory", "nano_cpus", "service_id", "weights")

    def __init__(self, service_id: str, nano_cpus: int, memory: int, weights: Weights) -> None:
        self.service_id = service_id
        self.nano_cpus = nano_cpus
        self.memory = memory
        self.weights = weights

    def key(self, view: NodeView) -> tuple[int, float, str, int]:
        return (
            view.service_counts.get(self.service_id, 0),
            -node_score(view, self.weights, self.nano_cpus, self.memory),
            view.id,
            view.index,
        )


def scores(
    view: NodeView,
    service_id: str,
    weights: Weights = DEFAULT_WEIGHTS,
    nano_cpus: int = 0,
    memory: int = 0,
) -> dict[str, float]:
    """Every scorer's value for a node (as if the task were placed), for display and tests."""
    return {
        "spread": spread_score(view.service_counts.get(service_id, 0)),
        "cpu": free_fraction(view.free_cpu - nano_cpus, view.cap_cpu),
        "memory": free_fraction(view.free_mem - memory, view.cap_mem),
        "tasks": 1.0 / (2 + view.tasks),
        "node": node_score(view, weights, nano_cpus, memory),
    }
