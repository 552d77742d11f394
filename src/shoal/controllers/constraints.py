"""Swarm placement constraints (`deploy.placement.constraints`) matched against a node.

Supported keys: node.id, node.hostname, node.role, node.labels.X, engine.labels.X,
node.platform.os, node.platform.arch; operators `==` and `!=`. The matcher returns the reason a
node does not qualify (or None), so "why is nothing running on node X" answers itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.model.cluster import Node

# Docker reports Go's architecture names, agents report uname's; a constraint may use either.
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64", "x86_64": "x86_64"}


def _node_value(node: Node, key: str) -> str | None:
    """The node's value for a constraint key; None when the node has no such label."""
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.description.hostname
    if key == "node.role":
        return node.spec.role
    if key == "node.platform.os":
        return node.description.os
    if key == "node.platform.arch":
        return _ARCH_ALIASES.get(node.description.arch, node.description.arch)
    if key.startswith("node.labels."):
        return node.spec.labels.get(key.removeprefix("node.labels."))
    if key.startswith("engine.labels."):
        return node.description.engine_labels.get(key.removeprefix("engine.labels."))
    raise ValueError(f"unknown constraint key {key!r}")


def unmet_constraint(node: Node, constraints: Sequence[str]) -> str | None:
    """The first constraint the node fails, as a readable reason; None when all hold."""
    for raw in constraints:
        if "!=" in raw:
            key, _, expected = raw.partition("!=")
            wanted_equal = False
        elif "==" in raw:
            key, _, expected = raw.partition("==")
            wanted_equal = True
        else:
            return f"constraint {raw!r} has no == or != operator"
        key, expected = key.strip(), expected.strip()
        try:
            actual = _node_value(node, key)
        except ValueError as exc:
            return f"constraint {raw!r}: {exc}"
        if key == "node.platform.arch":
            expected = _ARCH_ALIASES.get(expected, expected)
        if (actual == expected) != wanted_equal:
            shown = "unset" if actual is None else repr(actual)
            return f"constraint {raw!r} not met ({key} is {shown})"
    return None
