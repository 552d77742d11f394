"""The image builder: `build()` turns a Containerfile and a context into a tagged image.

Used by `shoal image build` and by `shoal deploy` for Compose `build:` sections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from shoal.images.build.executor import Builder
from shoal.images.build.parser import parse_containerfile
from shoal.images.content import ContentStore, normalize_ref
from shoal.model.errors import Invalid, NotFound

__all__ = ["Builder", "build", "find_containerfile"]


def find_containerfile(context: Path, dockerfile: Path | str | None) -> Path:
    """`-f` as given (relative to the current directory), else Containerfile or Dockerfile.

    A missing `Dockerfile` falls back to a `Containerfile` beside it: Compose writes
    `dockerfile: Dockerfile` as the default even when the user named none.
    """
    if dockerfile is not None:
        path = Path(dockerfile)
        fallback = path.parent / "Containerfile"
        if path.name == "Dockerfile" and not path.is_file() and fallback.is_file():
            return fallback
        if not path.is_file():
            raise NotFound(f"no such Containerfile: {path}", hint="check the -f path")
        return path
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise NotFound(
        f"no Containerfile or Dockerfile in the build context {context}",
        hint="add one, or name it with -f",
    )


def build(
    store: ContentStore,
    context_dir: Path | str,
    dockerfile: Path | str | None = None,
    tag: str | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    no_cache: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Build the image and tag it `tag` (when given); returns the manifest digest."""
    context = Path(context_dir)
    if not context.is_dir():
        raise NotFound(f"build context {context} is not a directory", hint="pass a directory")
    if tag is not None:
        normalize_ref(tag)  # refuse a bad name before doing any work
    path = find_containerfile(context, dockerfile)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read {path}: {exc}") from None
    parsed = parse_containerfile(text, path.name if dockerfile is None else str(path))
    started = time.monotonic()
    builder = Builder(store, context, parsed, dict(build_args or {}), no_cache, log)
    try:
        state = builder.run(target)
        digest = state.commit(store)
    finally:
        builder.close()
    if tag is not None:
        store.set_tag(tag, digest)
        log(f"COMMIT {normalize_ref(tag)}")
    log(f"--> {digest} ({time.monotonic() - started:.2f}s)")
    return digest
