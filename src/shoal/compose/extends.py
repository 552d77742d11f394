"""`extends`: a service built on another one, from the same file or another file.

Runs on one file's raw (interpolated, path-resolved) document. The base service is resolved
first (it may extend yet another service), then the extending service is merged over it with the
Compose merge rules. Cycles are an error that names the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.compose.merge import merge_service
from shoal.model.errors import ComposeError

ReadFile = Callable[[Path], dict[str, Any]]
"""Reads another Compose file (interpolated, paths resolved against its own directory)."""


class _Resolver:
    def __init__(self, read: ReadFile) -> None:
        self.read = read
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        self.chain: list[tuple[str, str]] = []

    def service(self, file: Path, services: dict[str, Any], name: str) -> dict[str, Any]:
        key = (str(file), name)
        if key in self.done:
            return self.done[key]
        if key in self.chain:
            loop = [*self.chain[self.chain.index(key) :], key]
            shown = " -> ".join(n if f == str(file) else f"{f}:{n}" for f, n in loop)
            raise ComposeError(
                f"circular reference with extends: {shown}", path=("services", name, "extends")
            )
        spec = services[name]
        if not isinstance(spec, dict) or "extends" not in spec:
            return spec if isinstance(spec, dict) else {}
        self.chain.append(key)
        try:
            resolved = self._extend(file, services, name, spec)
        finally:
            self.chain.pop()
        self.done[key] = resolved
        return resolved

    def _extend(
        self, file: Path, services: dict[str, Any], name: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        ext = spec["extends"]
        path = ("services", name, "extends")
        if isinstance(ext, str):
            ext = {"service": ext}
        if not isinstance(ext, dict) or not isinstance(ext.get("service"), str):
            raise ComposeError(f"extends.{name}.service is required", path=path)
        base_name: str = ext["service"]
        other = ext.get("file")
        if isinstance(other, str):
            base_file = Path(other)
            try:
                base_doc = self.read(base_file)
            except FileNotFoundError:
                raise ComposeError(
                    f"service {name!r} extends {base_name!r} from {other}, which does not exist",
                    path=(*path, "file"),
                ) from None
            base_services = base_doc.get("services") or {}
        else:
            base_file, base_services = file, services
        if base_name not in base_services:
            where = f" in {base_file}" if base_file != file else ""
            raise ComposeError(
                f"cannot extend service {name!r}: service {base_name!r} not found{where}",
                path=(*path, "service"),
            )
        base = self.service(base_file, base_services, base_name)
        own = {k: v for k, v in spec.items() if k != "extends"}
        return merge_service(base, own, path=("services", name))


def apply_extends(doc: dict[str, Any], file: Path, read: ReadFile) -> dict[str, Any]:
    """A copy of `doc` where every service with `extends` is merged over its base."""
    services = doc.get("services")
    if not isinstance(services, dict) or not any(
        isinstance(s, dict) and "extends" in s for s in services.values()
    ):
        return doc
    resolver = _Resolver(read)
    out = dict(doc)
    out["services"] = {
        name: resolver.service(file, services, name) if isinstance(spec, dict) else spec
        for name, spec in services.items()
    }
    return out
