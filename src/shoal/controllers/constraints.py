"""Swarm placement constraints matched against one node, for global services.

The grammar and the matching are the scheduler's (`scheduler.snapshot.parse_constraint`,
`scheduler.filters.value_matches`), so a global service and a replicated one agree on which
nodes qualify. The reason a node does not qualify is returned, not a bool.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.model.cluster import Node
from shoal.scheduler.filters import node_value, value_matches
from shoal.scheduler.snapshot import parse_constraint


def unmet_constraint(node: Node, constraints: Sequence[str]) -> str | None:
    """The first constraint the node fails, as a readable reason; None when all hold."""
    for raw in constraints:
        try:
            constraint = parse_constraint(raw)
        except ValueError as exc:
            return str(exc)
        actual = node_value(node, constraint.key)
        if not value_matches(constraint, actual):
            shown = "unset" if actual is None else repr(actual)
            return f"constraint {raw!r} not met ({constraint.key} is {shown})"
    return None
