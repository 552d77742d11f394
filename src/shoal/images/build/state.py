"""The state of one build stage: its layers, its config, its history and its cache chain key.

A stage can be committed at any point as an untagged image (config + manifest blobs), which is
what a RUN mounts and what `COPY --from` reads. Files of the image so far are looked up in the
unpacked layer directories, top layer first, without mounting anything.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.images.manifest import (
    OCI_CONFIG,
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    ImageManifest,
    RootFS,
    host_arch,
)
from shoal.images.unpack import unpack_layer

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class StageState:
    key: str  # the cache chain key of everything so far
    layers: list[Descriptor] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: list[History] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # ARG values declared in this stage
    cmd_set: bool = False  # CMD given in this stage (ENTRYPOINT then keeps it)
    committed: str | None = None

    @classmethod
    def from_image(cls, store: ContentStore, ref: str) -> StageState:
        image = load_image(store, ref)
        return cls(
            key=f"image:{image.digest}",
            layers=list(image.manifest.layers),
            diff_ids=list(image.config.rootfs.diff_ids),
            config=image.config.config.model_copy(deep=True),
            history=list(image.config.history or []),
        )

    def fork(self) -> StageState:
        """A new stage starting `FROM` this one."""
        return StageState(
            key=self.key,
            layers=list(self.layers),
            diff_ids=list(self.diff_ids),
            config=self.config.model_copy(deep=True),
            history=list(self.history),
            committed=self.committed,
        )

    # variables ----------------------------------------------------------------------------------

    def env_list(self) -> list[str]:
        return list(self.config.Env or [])

    def env_map(self) -> dict[str, str]:
        """Variables for substitution: ARGs, overridden by ENV (as Docker does)."""
        values = dict(self.args)
        for item in self.env_list():
            key, _, value = item.partition("=")
            values[key] = value
        return values

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.env_list() if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.config.Env = env
        self.committed = None

    def run_env(self) -> list[str]:
        """The environment of a RUN: ENV, plus ARGs not shadowed by ENV, plus a default PATH."""
        env = self.env_list()
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in self.args.items() if k not in names]
        if "PATH" not in names and "PATH" not in self.args:
            env.insert(0, DEFAULT_PATH)
        return env

    # layers and history -------------------------------------------------------------------------

    def add_layer(self, key: str, layer: Descriptor, diff_id: str, created_by: str) -> None:
        self.key = key
        self.layers.append(layer)
        self.diff_ids.append(diff_id)
        self.history.append(History(created=now(), created_by=created_by))
        self.committed = None

    def add_history(self, key: str, created_by: str) -> None:
        self.key = key
        self.history.append(History(created=now(), created_by=created_by, empty_layer=True))
        self.committed = None

    def image_config(self) -> ImageConfig:
        return ImageConfig(
            architecture=host_arch(),
            os="linux",
            created=now(),
            config=self.config,
            rootfs=RootFS(diff_ids=list(self.diff_ids)),
            history=list(self.history),
        )

    def commit(self, store: ContentStore) -> str:
        """Write this state as an (untagged) image; returns its manifest digest."""
        if self.committed and store.has_blob(self.committed):
            return self.committed
        config_bytes = self.image_config().to_json()
        config_digest = store.write_blob([config_bytes])
        manifest = ImageManifest(
            config=Descriptor(mediaType=OCI_CONFIG, digest=config_digest, size=len(config_bytes)),
            layers=list(self.layers),
        )
        self.committed = store.write_blob([manifest.to_json()])
        return self.committed

    # files of the image so far ------------------------------------------------------------------

    def layer_dirs(self, store: ContentStore) -> list[Path]:
        """Unpacked layer directories, top layer first."""
        pairs = zip(self.layers, self.diff_ids, strict=True)
        return [unpack_layer(store, layer, diff_id) for layer, diff_id in pairs][::-1]

    def lookup(self, store: ContentStore, path: str) -> Path | None:
        """Where `path` (absolute, in the image) lives in the layer dirs, or None if absent."""
        rel = path.strip("/")
        if not rel:
            return None
        parent, _, name = rel.rpartition("/")
        for top in self.layer_dirs(store):
            whiteout = top / parent / f".wh.{name}"
            candidate = top / rel
            if os.path.lexists(candidate):
                info = os.lstat(candidate)
                if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                    return None  # deleted by this layer (unpacked whiteout)
                return candidate
            if os.path.lexists(whiteout):
                return None
        return None

    def is_dir(self, store: ContentStore, path: str) -> bool:
        if path.strip("/") == "":
            return True
        found = self.lookup(store, path)
        return found is not None and found.is_dir() and not found.is_symlink()

    def read_text(self, store: ContentStore, path: str) -> str:
        found = self.lookup(store, path)
        if found is None or not found.is_file():
            return ""
        return found.read_text(errors="replace")
