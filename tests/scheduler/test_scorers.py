"""Scorers are normalised to 0..1 and order nodes as documented."""

from __future__ import annotations

import pytest

from shoal.scheduler.scorers import (
    Ranker,
    Weights,
    free_fraction,
    node_score,
    preference_score,
    scores,
    spread_score,
)
from shoal.scheduler.snapshot import NodeView
from tests.scheduler.factories import CPU, GIB, node


@pytest.mark.parametrize(
    ("free", "cap", "expected"),
    [(5, 10, 0.5), (0, 10, 0.0), (-3, 10, 0.0), (10, 10, 1.0), (1, 0, 0.0)],
)
def test_free_fraction(free: int, cap: int, expected: float) -> None:
    assert free_fraction(free, cap) == expected


@pytest.mark.parametrize("count", [0, 1, 2, 10, 1000])
def test_count_scores_in_unit_interval_and_decreasing(count: int) -> None:
    for f in (spread_score, preference_score):
        assert 0.0 < f(count + 1) < f(count) <= 1.0


def test_node_score_weights_and_bounds() -> None:
    v = NodeView(node("n", cpus=4, memory=8 * GIB), 0)
    assert node_score(v) == pytest.approx((1 + 1 + 0.5) / 3)
    assert node_score(v, Weights(cpu=1, memory=0, tasks=0), nano_cpus=CPU) == 0.75
    assert node_score(v, Weights(cpu=0, memory=1, tasks=0), memory=6 * GIB) == 0.25
    assert node_score(v, Weights(0, 0, 0)) == 0.0
    v.reserve("x", 8 * CPU, 16 * GIB)  # over-committed by running tasks: still within 0..1
    for value in scores(v, "x").values():
        assert 0.0 <= value <= 1.0


def test_ranker_orders_by_spread_then_score_then_id() -> None:
    a, b, c = (NodeView(node(i, memory=m), n) for n, (i, m) in enumerate(
        [("a", 8 * GIB), ("b", 16 * GIB), ("c", 16 * GIB)]))  # fmt: skip
    rank = Ranker("svc", 0, GIB, Weights())
    assert sorted([a, b, c], key=rank.key) == [b, c, a]  # more free memory, then id
    b.reserve("svc", 0, 0)
    assert sorted([a, b, c], key=rank.key) == [c, a, b]  # b already runs one of ours
