"""Filters: may this task go to this node? Each returns None when it may, else a short reason.

`FILTERS` lists them in the order reasons are reported (a node is counted under the first one
it fails, as Swarm does). Placement does not call them node by node on its fast path; it
evaluates the static ones once per (service, node) and checks resources and
`max_replicas_per_node` inline (see `placement`). `explain` runs them all to say, aggregated
over the cluster, why a task found no node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shoal.model.cluster import Availability, Node
from shoal.scheduler.snapshot import NANO, Constraint, NodeView, Requirements, normalise_arch

Filter = Callable[[Requirements, NodeView], str | None]


def node_attribute(view: NodeView, key: str) -> str | None:
    """The value of a constraint/preference key on a node; None when the node lacks it."""
    if key == "node.platform.os":
        return view.os
    if key == "node.platform.arch":
        return view.arch
    return node_value(view.node, key)


def node_value(node: Node, key: str) -> str | None:
    """`node_attribute` for a bare Node (no pass in progress), e.g. for global services."""
    if key.startswith("node.labels."):
        return node.spec.labels.get(key[len("node.labels.") :])
    if key.startswith("engine.labels."):
        return node.description.engine_labels.get(key[len("engine.labels.") :])
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.description.hostname
    if key == "node.role":
        return node.spec.role
    if key == "node.platform.os":
        return node.description.os
    if key == "node.platform.arch":
        return normalise_arch(node.description.arch)
    return None


def constraint_matches(c: Constraint, view: NodeView) -> bool:
    return value_matches(c, node_attribute(view, c.key))


def value_matches(c: Constraint, actual: str | None) -> bool:
    if actual is None:
        return not c.equal  # a missing label never equals, so it always differs
    wanted = c.value
    if c.key == "node.platform.arch":
        wanted = normalise_arch(wanted)
    return (actual.casefold() == wanted.casefold()) == c.equal


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return f"{n}B"


def fmt_cpus(nano: int) -> str:
    # Truncated to milli-CPUs: rounding could print "free 1" next to "needs 1".
    milli = nano // (NANO // 1000)
    return f"{milli / 1000:.3f}".rstrip("0").rstrip(".")


# --- the filters -------------------------------------------------------------------------------


def preset_node(req: Requirements, view: NodeView) -> str | None:
    if req.preset_node and view.id != req.preset_node:
        return f"not the task's node {req.preset_node}"
    return None


def volumes(req: Requirements, view: NodeView) -> str | None:
    """A named volume lives on one node: tasks mounting it go there (or nowhere)."""
    if req.volume_error is not None:
        return req.volume_error
    if req.volume_node and view.id != req.volume_node:
        return f"volume {req.volume_name} lives on node {req.volume_node}"
    return None


def ready(req: Requirements, view: NodeView) -> str | None:
    return None if view.ready else f"node not ready ({view.node.status.state.value})"


def availability(req: Requirements, view: NodeView) -> str | None:
    if view.availability == Availability.DRAIN:
        return "node drained"
    if view.availability == Availability.PAUSE:
        return "node paused"
    return None


def resources(req: Requirements, view: NodeView) -> str | None:
    short = []
    # A zero request always fits, even on a node already over-committed by running tasks.
    if req.nano_cpus and req.nano_cpus > view.free_cpu:
        short.append(f"cpu (needs {fmt_cpus(req.nano_cpus)} CPUs, free {fmt_cpus(view.free_cpu)})")
    if req.memory and req.memory > view.free_mem:
        short.append(f"memory (needs {fmt_bytes(req.memory)}, free {fmt_bytes(view.free_mem)})")
    return "insufficient " + " and ".join(short) if short else None


def constraints(req: Requirements, view: NodeView) -> str | None:
    if req.constraint_error is not None:
        return req.constraint_error
    for c in req.constraints:
        if not constraint_matches(c, view):
            return f"constraint {c.text} not met"
    return None


def preferences(req: Requirements, view: NodeView) -> str | None:
    return req.preference_error


def platform(req: Requirements, view: NodeView) -> str | None:
    if (req.platform_os and req.platform_os != view.os) or (
        req.platform_arch and req.platform_arch != view.arch
    ):
        return f"platform {req.platform} not supported (node is {view.os}/{view.arch})"
    return None


def runtime(req: Requirements, view: NodeView) -> str | None:
    if req.runtime is not None and req.runtime not in view.runtimes:
        return f"runtime {req.runtime} not available"
    return None


def max_replicas(req: Requirements, view: NodeView) -> str | None:
    if req.max_replicas and view.service_counts.get(req.service_id, 0) >= req.max_replicas:
        return f"max replicas per node ({req.max_replicas}) reached"
    return None


FILTERS: tuple[tuple[str, Filter], ...] = (
    ("node", preset_node),
    ("volumes", volumes),
    ("ready", ready),
    ("availability", availability),
    ("resources", resources),
    ("constraints", constraints),
    ("preferences", preferences),
    ("platform", platform),
    ("runtime", runtime),
    ("max_replicas", max_replicas),
)

STATIC_FILTERS: tuple[Filter, ...] = (volumes, constraints, preferences, platform, runtime)
"""Filters whose answer depends only on the service and the node, not on placements."""


def check(req: Requirements, view: NodeView) -> dict[str, str]:
    """Every filter's reason for this node; empty when the node is suitable."""
    return {name: r for name, f in FILTERS if (r := f(req, view)) is not None}


# --- explaining a task that found no node -------------------------------------------------------


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def explain(req: Requirements, views: Sequence[NodeView]) -> dict[str, str]:
    """Why no node suits `req`, per filter and as a one-line `summary`, aggregated like Swarm."""
    if req.preset_node:
        views = [v for v in views if v.id == req.preset_node]
        if not views:
            reason = f"node {req.preset_node} is not in the cluster"
            return {"node": reason, "summary": f"no suitable node: {reason}"}
    if not views:
        return {"nodes": "no nodes in the cluster", "summary": "no suitable node: no nodes"}
    first: dict[str, list[NodeView]] = {}
    for view in views:
        for name, f in FILTERS:
            if f(req, view) is not None:
                first.setdefault(name, []).append(view)
                break
    reasons: dict[str, str] = {}
    if req.preset_node:
        # One node only: its own reason says more than a count.
        for name, failed in first.items():
            reasons[name] = f"node {req.preset_node}: " + str(dict(FILTERS)[name](req, failed[0]))
    else:
        reasons = _aggregate(req, views, first)
    summary = "; ".join(reasons.values()) or "all nodes suitable"
    reasons["summary"] = f"no suitable node: {summary}"
    return reasons


def _aggregate(
    req: Requirements, views: Sequence[NodeView], first: dict[str, list[NodeView]]
) -> dict[str, str]:
    reasons: dict[str, str] = {}
    if failed := first.get("volumes"):
        reasons["volumes"] = str(volumes(req, failed[0]))
    if failed := first.get("ready"):
        reasons["ready"] = f"{_nodes(len(failed))} not ready"
    if failed := first.get("availability"):
        drained = sum(v.availability == Availability.DRAIN for v in failed)
        parts = [f"{_nodes(drained)} drained"] if drained else []
        if paused := len(failed) - drained:
            parts.append(f"{_nodes(paused)} paused")
        reasons["availability"] = "; ".join(parts)
    if failed := first.get("resources"):
        parts = []
        cpu = [v.free_cpu for v in failed if req.nano_cpus and req.nano_cpus > v.free_cpu]
        if cpu:
            parts.append(
                f"insufficient cpu on {_nodes(len(cpu))} "
                f"(needs {fmt_cpus(req.nano_cpus)} CPUs, most free {fmt_cpus(max(cpu))})"
            )
        mem = [v.free_mem for v in failed if req.memory and req.memory > v.free_mem]
        if mem:
            parts.append(
                f"insufficient memory on {_nodes(len(mem))} "
                f"(needs {fmt_bytes(req.memory)}, most free {fmt_bytes(max(mem))})"
            )
        reasons["resources"] = "; ".join(parts)
    if req.constraint_error is not None:
        reasons["constraints"] = req.constraint_error
    else:
        # Per constraint over the whole cluster: tells which one rules the nodes out.
        parts = []
        for c in req.constraints:
            matched = sum(constraint_matches(c, v) for v in views)
            if matched < len(views):
                parts.append(f"constraint {c.text} matched {matched} of {_nodes(len(views))}")
        if parts:
            reasons["constraints"] = "; ".join(parts)
    if req.preference_error is not None:
        reasons["preferences"] = req.preference_error
    if failed := first.get("platform"):
        reasons["platform"] = f"platform {req.platform} not supported by {_nodes(len(failed))}"
    if failed := first.get("runtime"):
        reasons["runtime"] = f"runtime {req.runtime} not available on {_nodes(len(failed))}"
    if failed := first.get("max_replicas"):
        reasons["max_replicas"] = (
            f"max replicas per node ({req.max_replicas}) reached on {_nodes(len(failed))}"
        )
    return reasons
