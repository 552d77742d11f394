"""The build context: `.dockerignore` rules, wildcard source selection, content hashing.

`.dockerignore` lines are patterns relative to the context root (`*`, `?`, `[...]` within one
path element, `**` across any number of elements); a leading `!` re-includes what an earlier
line excluded, the last matching line wins, and a path is excluded when it or a parent matches.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from shoal.model.errors import Invalid

_GLOB_CHARS = frozenset("*?[")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise Invalid(f"bad pattern {pattern!r}: unclosed [", hint="close the [...]")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool


class IgnoreRules:
    """The parsed `.dockerignore` of a context."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:].strip() if negated else line
            line = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else "."
            if line == ".":
                continue
            self.rules.append(_Rule(_pattern_regex(line), negated))

    @classmethod
    def load(cls, context: Path) -> IgnoreRules:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    @property
    def has_exceptions(self) -> bool:
        return any(rule.negated for rule in self.rules)

    def ignored(self, rel: str) -> bool:
        """Whether the context path `rel` (posix, relative) is excluded."""
        parts = rel.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for rule in self.rules:
            if any(rule.regex.match(c) for c in candidates):
                excluded = not rule.negated
        return excluded


def clean_source(src: str, what: str) -> str:
    """A context-relative path from a COPY source; refuses ones that leave the context."""
    norm = posixpath.normpath(src.lstrip("/") or ".")
    if norm == ".." or norm.startswith("../"):
        raise Invalid(
            f"{what}: source {src!r} is outside the build context",
            hint="COPY and ADD read only files inside the context directory",
        )
    return norm


def _match_segments(pattern: list[str], path: list[str]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(_pattern_regex(p).match(s) for p, s in zip(pattern, path, strict=True))


def select(root: Path, src: str, rules: IgnoreRules | None) -> list[str]:
    """The paths under `root` (relative, posix) that the source `src` names, sorted."""
    if src == ".":
        return ["."]
    if not any(c in _GLOB_CHARS for c in src):
        if os.path.lexists(root / src) and not (rules and rules.ignored(src)):
            return [src]
        return []
    pattern = src.split("/")
    found: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = [] if rel_dir == "." else rel_dir.split("/")
        if len(prefix) >= len(pattern):
            dirs.clear()
            continue
        for name in sorted(dirs + files):
            rel = [*prefix, name]
            path = "/".join(rel)
            if _match_segments(pattern, rel) and not (rules and rules.ignored(path)):
                found.append(path)
    return sorted(found)


def walk(root: Path, rel: str, rules: IgnoreRules | None) -> list[str]:
    """`rel` and every path below it (sorted, parents first) that `rules` do not exclude."""
    out: list[str] = []
    base = root / rel
    if not base.is_dir() or base.is_symlink():
        return [rel]
    for dirpath, dirs, files in os.walk(base):
        dirs.sort()
        here = os.path.relpath(dirpath, root)
        for name in sorted(dirs + files):
            path = name if here == "." else f"{here}/{name}"
            if rules and rules.ignored(path):
                if name in dirs and not rules.has_exceptions:
                    dirs.remove(name)
                continue
            out.append(path)
    return out


def hash_paths(root: Path, paths: list[str]) -> str:
    """A digest of names, modes, link targets and contents (the cache key for COPY)."""
    digest = hashlib.sha256()
    for rel in paths:
        full = root / rel
        info = os.lstat(full)
        digest.update(f"{rel}\0{info.st_mode:o}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(full).encode())
        elif stat.S_ISREG(info.st_mode):
            with open(full, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        digest.update(b"\n")
    return digest.hexdigest()
