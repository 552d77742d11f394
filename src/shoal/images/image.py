"""From a reference to a runnable image: manifest (platform chosen), config, unpacked layers."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.images.content import ContentStore
from shoal.images.manifest import (
    ImageConfig,
    ImageIndex,
    ImageManifest,
    check_platform,
    host_arch,
    parse_config,
    parse_manifest,
    select_platform,
)
from shoal.model.errors import Invalid, NotFound


@dataclass(frozen=True, slots=True)
class Image:
    """One platform's image: the manifest chosen and its parsed config."""

    ref: str
    digest: str  # of the manifest (or of the index it came from: `top_digest`)
    top_digest: str
    manifest: ImageManifest
    config: ImageConfig

    @property
    def size(self) -> int:
        return self.manifest.config.size + sum(layer.size for layer in self.manifest.layers)


def load_image(
    store: ContentStore, ref: str, *, os: str = "linux", arch: str | None = None
) -> Image:
    """Resolve `ref` (tag or digest), pick the platform's manifest out of an index, load config."""
    arch = arch or host_arch()
    top = store.resolve(ref)
    digest = top
    doc = parse_manifest(store.read_blob(top), what=f"manifest {top} of {ref}")
    for _depth in range(4):  # an index may nest indexes; four levels is plenty
        if isinstance(doc, ImageManifest):
            break
        chosen = select_platform(doc, os=os, arch=arch)
        digest = chosen.digest
        if not store.has_blob(digest):
            raise NotFound(
                f"image {ref}: the {os}/{arch} manifest {digest} is not in the store",
                hint=f"pull the image for this platform: shoal image pull {ref}",
            )
        doc = parse_manifest(store.read_blob(digest), chosen.mediaType, what=f"manifest {digest}")
    if isinstance(doc, ImageIndex):
        raise Invalid(f"image {ref}: image indexes nest too deeply")
    config = parse_config(
        store.read_blob(doc.config.digest), what=f"image config {doc.config.digest} of {ref}"
    )
    check_platform(config, os=os, arch=arch)
    return Image(ref=ref, digest=digest, top_digest=top, manifest=doc, config=config)


def image_config(store: ContentStore, ref: str) -> ImageConfig:
    """The config of the image `ref` names, for this machine's platform (runtime helper)."""
    return load_image(store, ref).config
