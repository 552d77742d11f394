"""The image hook of the task runner: make sure a task's image is here, mount its rootfs.

Images come from the node's store (`<agent data>/images`): built or imported there, or pulled
from their registry on first use. Each container gets its own overlay over the shared layers.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.images.manifest import ContainerConfig
from shoal.images.rootfs import prepare_rootfs, release_rootfs
from shoal.model.cluster import Task
from shoal.model.errors import Invalid, NotFound, ShoalError


class ImageProvider:
    def __init__(self, data_dir: Path) -> None:
        self.store = ContentStore(data_dir / "images")
        self.mounts = data_dir / "rootfs"
        self._pulls: dict[str, asyncio.Task[None]] = {}  # one pull per ref, shared by tasks

    async def ensure(self, ref: str) -> None:
        try:
            await asyncio.to_thread(self.store.resolve, ref)
            return
        except NotFound:
            pass
        if ref not in self._pulls:
            self._pulls[ref] = asyncio.create_task(self._pull(ref))
        try:
            await asyncio.shield(self._pulls[ref])
        finally:
            if self._pulls.get(ref) is not None and self._pulls[ref].done():
                self._pulls.pop(ref, None)

    async def _pull(self, ref: str) -> None:
        from shoal.images.registry import RegistryClient

        try:
            async with RegistryClient() as client:
                await client.pull(ref, self.store)
        except ShoalError as exc:
            raise NotFound(
                f"image {ref} is not on this node and could not be pulled: {exc.message}",
                hint="build it (`shoal image build`), import it (`shoal image import`), or push "
                "it to a registry this node can reach",
            ) from None

    async def prepare(self, task: Task) -> tuple[ContainerConfig, str]:
        """The image's container config and the path of the task's mounted rootfs."""
        ref = task.spec.image
        if not ref:
            raise Invalid(f"task {task.name}: the service has no image", hint="set `image:`")
        await self.ensure(ref)
        image = await asyncio.to_thread(load_image, self.store, ref)
        rootfs = await asyncio.to_thread(prepare_rootfs, self.store, ref, self.mounts / task.id)
        return image.config.config, str(rootfs)

    def mounted(self) -> set[str]:
        """Task ids that have a rootfs directory here (mounted or half-released)."""
        if not self.mounts.is_dir():
            return set()
        return {p.name for p in self.mounts.iterdir() if p.is_dir()}

    async def release(self, task_id: str) -> None:
        directory = self.mounts / task_id
        if directory.exists():
            await asyncio.to_thread(release_rootfs, directory)
            await asyncio.to_thread(shutil.rmtree, directory, True)
