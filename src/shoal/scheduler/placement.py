"""Placement: `schedule(snapshot) -> list[Decision]`, pure and fast enough for big clusters.

Running every filter on every node for every task is tasks x nodes x filters checks (50M for
10,000 tasks on 5,000 nodes): far too slow in Python. Instead:

1. Each node becomes a `NodeView` charged with the reservations and per-service counts of the
   tasks already on it (one pass over `snapshot.tasks`).
2. Pending tasks are grouped by (service, spec version, preset node): tasks of a group share
   their `Requirements`, read once from the spec (constraints parsed once).
3. The static filters (ready, availability, constraints, preferences syntax, platform,
   runtime) are evaluated once per (static requirements, node); groups with equal
   constraints/platform/runtime share the resulting candidate list.
4. Each group builds a tree over its candidates: one level per placement preference (label
   value; nodes missing the label form their own branch, as in Swarm), each leaf holding a heap
   of `Ranker` keys (tasks of the service on the node, -node score, node id). Per task the walk
   takes the branch holding the fewest tasks of the service (ties by value), then the best node
   of the leaf heap. Resources and `max_replicas_per_node` are checked only on the popped
   node; a node that fails them is dropped for the rest of the group, which is safe because
   during a pass free resources only shrink and counts only grow. The chosen node is charged
   and pushed back with its new key: O(log n) per placement plus the branch walk.
   Only the chosen node changes while a group is placed, so heap entries never go stale; the
   next group rebuilds its heaps (O(candidates), heapify) and so sees every earlier placement.
5. A group that runs out of nodes calls `filters.explain` once (all filters on all nodes) and
   gives the same aggregated reasons to all its remaining tasks.

Global tasks with a preset node skip the tree: every filter runs on that one node.
A task whose `not_before` (restart delay) is later than `now` is not placed yet; its decision
carries a `delay` reason, so `shoal ps` can say why it waits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from heapq import heapify, heappop, heappush

from shoal.model.cluster import Task
from shoal.scheduler.filters import STATIC_FILTERS, check, explain, node_attribute
from shoal.scheduler.scorers import DEFAULT_WEIGHTS, Ranker, Weights
from shoal.scheduler.snapshot import (
    Decision,
    NodeView,
    Requirements,
    Snapshot,
    VolumeBindings,
    build_views,
    read_requirements,
)

Path = tuple[str, ...]


class _Tree:
    """Candidates of one group, nested by preference label values, best node first per leaf."""

    def __init__(self, req: Requirements, candidates: Sequence[NodeView], weights: Weights) -> None:
        self.req = req
        key = self.key = Ranker(req.service_id, req.nano_cpus, req.memory, weights).key
        self.depth = len(req.preferences)
        self.heaps: dict[Path, list[tuple[int, float, str, int]]] = defaultdict(list)
        self.paths: dict[int, Path] = {}
        self.counts: dict[Path, int] = defaultdict(int)
        self.children: dict[Path, set[str]] = defaultdict(set)
        self.dead: set[Path] = set()
        sid = req.service_id
        if not self.depth:
            self.heaps[()] = [key(v) for v in candidates]
        else:
            for v in candidates:
                path = tuple(node_attribute(v, d) or "" for d in req.preferences)
                self.paths[v.index] = path
                self.heaps[path].append(key(v))
                count = v.service_counts.get(sid, 0)
                for i in range(self.depth):
                    self.children[path[:i]].add(path[i])
                    self.counts[path[: i + 1]] += count
        for heap in self.heaps.values():
            heapify(heap)

    def pick(self, views: Sequence[NodeView]) -> NodeView | None:
        return self._pick((), views)

    def _pick(self, prefix: Path, views: Sequence[NodeView]) -> NodeView | None:
        if len(prefix) == self.depth:
            return self._pop(prefix, views)
        counts = self.counts
        for value in sorted(self.children[prefix], key=lambda v: (counts[(*prefix, v)], v)):
            path = (*prefix, value)
            if path in self.dead:
                continue
            view = self._pick(path, views)
            if view is not None:
                return view
            self.dead.add(path)  # nothing under it fits this group any more
        return None

    def _pop(self, path: Path, views: Sequence[NodeView]) -> NodeView | None:
        heap = self.heaps[path]
        req = self.req
        while heap:
            view = views[heappop(heap)[3]]
            if (req.nano_cpus and req.nano_cpus > view.free_cpu) or (
                req.memory and req.memory > view.free_mem
            ):
                continue  # as `filters.resources`
            if req.max_replicas and view.service_counts.get(req.service_id, 0) >= req.max_replicas:
                continue
            return view
        return None

    def placed(self, view: NodeView) -> None:
        """Account a placement on `view` (already charged) and give it back to its leaf."""
        path = self.paths.get(view.index, ())
        for i in range(1, self.depth + 1):
            self.counts[path[:i]] += 1
        heappush(self.heaps[path], self.key(view))


class _Pass:
    """State of one `schedule` call."""

    def __init__(self, snapshot: Snapshot, weights: Weights) -> None:
        self.weights = weights
        self.views = build_views(snapshot)
        self.by_id = {v.id: v for v in self.views}
        self.schedulable = [v for v in self.views if v.ready and v.active]
        self.eligible: dict[tuple[object, ...], list[NodeView]] = {}

    def candidates(self, req: Requirements) -> list[NodeView]:
        key = req.static_key
        found = self.eligible.get(key)
        if found is None:
            if req.constraint_error or req.preference_error:
                found = []
            else:
                found = [
                    v for v in self.schedulable if all(f(req, v) is None for f in STATIC_FILTERS)
                ]
            self.eligible[key] = found
        return found

    def commit(self, req: Requirements, view: NodeView) -> None:
        view.reserve(req.service_id, req.nano_cpus, req.memory)

    def place_preset(self, req: Requirements, tasks: Sequence[Task]) -> list[Decision]:
        out: list[Decision] = []
        for task in tasks:
            view = self.by_id.get(req.preset_node)
            if view is not None and not check(req, view):
                self.commit(req, view)
                out.append(Decision(task.id, view.id, {}))
            else:
                out.append(Decision(task.id, None, explain(req, [view] if view else [])))
        return out

    def place_group(self, req: Requirements, tasks: Sequence[Task]) -> list[Decision]:
        tree = _Tree(req, self.candidates(req), self.weights)
        out: list[Decision] = []
        for i, task in enumerate(tasks):
            view = tree.pick(self.views)
            if view is None:
                reasons = explain(req, self.views)
                out.extend(Decision(t.id, None, dict(reasons)) for t in tasks[i:])
                break
            self.commit(req, view)
            tree.placed(view)
            out.append(Decision(task.id, view.id, {}))
        return out


def _delayed(task: Task, now: float) -> Decision:
    wait = f"restart delay: not before {task.not_before:.3f} ({task.not_before - now:.1f}s)"
    return Decision(task.id, None, {"delay": wait, "summary": f"waiting: {wait}"})


def schedule(snapshot: Snapshot, weights: Weights = DEFAULT_WEIGHTS) -> list[Decision]:
    """A decision for every task of `snapshot.pending`, in that order.

    The result depends only on the snapshot's content, not on the order of `pending`: groups
    are placed oldest first (their earliest `created_at`, then service id, spec version and
    preset node), tasks within one by (slot, id).
    """
    run = _Pass(snapshot, weights)
    volumes = VolumeBindings(snapshot.volumes)
    decided: dict[str, Decision] = {}
    reqs: dict[tuple[str, int], Requirements] = {}
    groups: dict[tuple[str, int, str], list[Task]] = defaultdict(list)
    for task in snapshot.pending:
        if task.not_before > snapshot.now:
            decided[task.id] = _delayed(task, snapshot.now)
            continue
        key = (task.service_id, task.spec_version)
        if key not in reqs:
            # A spec version is immutable, so one read serves every task of it.
            reqs[key] = read_requirements(task.service_id, task.spec)
        groups[(*key, task.node_id)].append(task)
    # Oldest work first, so a long-pending task is not starved by newer services.
    order = sorted(groups, key=lambda k: (min(t.created_at for t in groups[k]), k))
    for service_id, version, preset in order:
        tasks = groups[(service_id, version, preset)]
        tasks.sort(key=lambda t: (t.slot if t.slot is not None else -1, t.id))
        req = volumes.apply(reqs[(service_id, version)], tasks[0])
        if preset:
            decisions = run.place_preset(_with_preset(req, preset), tasks)
        elif req.unbound:
            decisions = _place_binding(run, req, tasks, volumes)
        else:
            decisions = run.place_group(req, tasks)
        if req.unbound and decisions and decisions[0].node_id:
            volumes.bind(req, decisions[0].node_id)
        for decision in decisions:
            decided[decision.task_id] = decision
    return [decided[t.id] for t in snapshot.pending]


def _place_binding(
    run: _Pass, req: Requirements, tasks: Sequence[Task], volumes: VolumeBindings
) -> list[Decision]:
    """A group mounting volumes that live nowhere yet: the first task picks their node, the
    others follow it there."""
    first = run.place_group(req, tasks[:1])
    node = first[0].node_id
    if node is None:
        return first + [Decision(t.id, None, dict(first[0].reasons)) for t in tasks[1:]]
    volumes.bind(req, node)
    name = req.volume_name or req.unbound[0]
    bound = replace(req, volume_node=node, volume_name=name, unbound=())
    return first + (run.place_group(bound, tasks[1:]) if len(tasks) > 1 else [])


def _with_preset(req: Requirements, node_id: str) -> Requirements:
    return replace(req, preset_node=node_id)
