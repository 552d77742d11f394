"""What every request handler and loop of the server shares: store, cache, clock, token."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from shoal.model.cluster import Node, Task
from shoal.model.errors import Conflict, NotFound
from shoal.network.allocate import DEFAULT_POOL
from shoal.secrets.crypto import SecretKeys
from shoal.server import objects
from shoal.server.cache import ClusterCache
from shoal.store import Compare, Op, Store

T = TypeVar("T")


class Raced(Conflict):
    """A compare-and-swap write lost to a concurrent writer: reading again and retrying helps."""


def new_id() -> str:
    """A 25-character lowercase id, like Swarm's."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(25))


@dataclass
class ServerContext:
    store: Store
    cache: ClusterCache
    token: str
    data_dir: Path
    clock: Callable[[], float] = time.time
    agent_token: str = ""
    new_id: Callable[[], str] = field(default=new_id)
    network_pool: str = DEFAULT_POOL
    secret_keys: SecretKeys | None = None  # the secrets key (`serve` loads it at start)

    def secrets_keys(self) -> SecretKeys:
        """The secrets key; a context made without one uses (or makes) the data dir's."""
        if self.secret_keys is None:
            self.secret_keys = SecretKeys.open(self.data_dir)
        return self.secret_keys

    async def commit(self, compares: list[Compare], ops: list[Op], what: str) -> int:
        """Run a guarded write; Raced if someone wrote first. Waits for the cache to see it."""
        result = await self.store.txn(compares, ops, [])
        if not result.succeeded:
            raise Raced(
                f"{what}: changed concurrently by someone else",
                hint="retry: the command reads the current state again",
            )
        await self.cache.wait_for(result.revision)
        return result.revision

    async def retrying(self, attempt: Callable[[], Awaitable[T]], times: int = 3) -> T:
        """Run a read-decide-commit `attempt` again when its commit lost a race (the cache has
        the winner's write by then); after `times` losses the Conflict reaches the caller."""
        for left in range(times - 1, -1, -1):
            try:
                return await attempt()
            except Raced:
                if not left:
                    raise
        raise AssertionError("unreachable")

    def agent_url(self, task: Task, what: str) -> str:
        """Where the agent of `task`'s node serves its container (`what`: for the error)."""
        if not task.node_id:
            raise Conflict(
                f"task {task.id} has not been placed on a node yet: no {what}",
                hint=f"see why with `shoal ps {task.stack}`",
            )
        entry = self.cache.get(objects.node_key(task.node_id))
        if entry is None or not isinstance(entry[0], Node) or not entry[0].status.addr:
            raise NotFound(f"node {task.node_id} of task {task.id} is unknown or has no address")
        return f"http://{entry[0].status.addr}/v1/containers/{task.id}"

    def find_task(self, task_id: str) -> tuple[Task, int]:
        """A task by id (agents: an index lookup), or for people by unique id prefix."""
        exact = self.cache.task(task_id)
        if exact is not None:
            return exact
        matches = [tid for tid in self.cache.task_keys if tid.startswith(task_id)]
        if len(matches) == 1:
            found = self.cache.task(matches[0])
            if found is not None:
                return found
        if len(matches) > 1:
            raise NotFound(f"task id prefix {task_id!r} is ambiguous ({len(matches)} tasks)")
        raise NotFound(f"no task {task_id!r}", hint="list tasks with `shoal ps --all`")
