"""Layers unpacked once into shared read-only directories, `<store>/layers/<diff_id hex>/`.

A layer is extracted into a private temp dir next to its final place, its diff_id (sha256 of the
uncompressed tar) verified, then renamed into place: a reader sees a whole layer or none. An
exclusive `flock` per layer makes concurrent unpacks of one layer (threads or processes) do the
work once; the others wait and find it done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shoal.images.content import ContentStore
from shoal.images.extract import extract_layer
from shoal.images.manifest import LAYER_TYPES, Descriptor, ImageConfig, ImageManifest
from shoal.images.tarstream import layer_errors, open_uncompressed
from shoal.model.errors import Invalid, NotFound

_STALE_TMP = 3600.0


def layer_dir(store: ContentStore, diff_id: str) -> Path:
    algo, _, hexpart = diff_id.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise Invalid(f"malformed diff_id {diff_id!r}", hint="expected sha256:<64 hex digits>")
    return store.layers / hexpart


@contextlib.contextmanager
def _layer_lock(store: ContentStore, name: str) -> Iterator[None]:
    # flock conflicts between separate open() calls, so this serialises threads too.
    with open(store.layers / f".{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _extract_verified(store: ContentStore, layer: Descriptor, diff_id: str, dest: Path) -> None:
    what = f"layer {layer.digest}"
    path = store.blob_path(layer.digest)
    if not path.is_file():
        raise NotFound(
            f"{what} is not in the image store {store.root}",
            hint="pull the image again to fetch its layers",
        )
    with layer_errors(what), open_uncompressed(path) as reader:
        extract_layer(reader, dest, what)
        reader.drain()
        if reader.digest != diff_id:
            raise Invalid(
                f"{what}: uncompressed content has digest {reader.digest}, "
                f"the image config says {diff_id} ({reader.size} bytes read)",
                hint="the layer or the image config is corrupt; pull the image again",
            )


def unpack_layer(store: ContentStore, layer: Descriptor, diff_id: str) -> Path:
    """The unpacked directory of `layer`, unpacking it first unless already done."""
    final = layer_dir(store, diff_id)
    if final.is_dir():
        return final
    if layer.mediaType not in LAYER_TYPES:
        raise Invalid(
            f"layer {layer.digest} has media type {layer.mediaType!r}, which is not a layer",
            hint=f"supported layer types: {', '.join(LAYER_TYPES)}",
        )
    with _layer_lock(store, final.name):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=store.layers, prefix=f".tmp-{final.name[:12]}-"))
        try:
            os.chmod(tmp, 0o755)
            _extract_verified(store, layer, diff_id, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def unpack_image(store: ContentStore, manifest: ImageManifest, config: ImageConfig) -> list[Path]:
    """Unpack every layer of an image; the directories come bottom layer first."""
    diff_ids = config.rootfs.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise Invalid(
            f"image has {len(manifest.layers)} layers but its config lists "
            f"{len(diff_ids)} diff_ids",
            hint="the image is malformed; rebuild or re-push it",
        )
    return [
        unpack_layer(store, layer, d) for layer, d in zip(manifest.layers, diff_ids, strict=True)
    ]


def _mounted_lowers() -> set[str]:
    """Every lowerdir of an overlay mounted on this machine (so gc leaves them alone)."""
    found: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            if " - overlay " not in line:
                continue
            for option in line.rsplit(" ", 1)[-1].strip().split(","):
                if option.startswith("lowerdir="):
                    found.update(os.path.basename(p) for p in option[9:].split(":"))
    return found


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def prune_layers(store: ContentStore, keep_diff_ids: set[str]) -> int:
    """Remove unpacked layers not in `keep_diff_ids` and not under a mounted overlay."""
    keep = {d.partition(":")[2] for d in keep_diff_ids} | _mounted_lowers()
    freed = 0
    now = time.time()
    for path in store.layers.iterdir():
        name = path.name
        if name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > _STALE_TMP:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        if name.startswith(".") or name in keep or not path.is_dir():
            continue
        with _layer_lock(store, name):
            freed += _tree_size(path)
            shutil.rmtree(path, ignore_errors=True)
    return freed
