"""`.dockerignore` rules and COPY source selection over a build context."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.images.build.context import IgnoreRules, clean_source, hash_paths, select, walk
from shoal.model.errors import Invalid, NotFound


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "sub/a.log", False),
        (["**/*.log"], "sub/deep/a.log", True),
        (["**/*.log"], "a.log", True),
        (["node_modules"], "node_modules/x/y.js", True),
        (["/build/"], "build/out", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["!keep", "*"], "keep", True),  # the last match wins
        (["secret?.txt"], "secret1.txt", True),
        (["secret[0-9].txt"], "secretx.txt", False),
        (["# comment", "", "  tmp  "], "tmp", True),
        (["docs/**/draft*"], "docs/a/b/draft1", True),
    ],
)
def test_dockerignore_patterns(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(patterns).ignored(path) is ignored


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    for name in ("a.txt", "b.txt", "c.log", "dir/x.txt", "dir/sub/y.txt", "dir/skip.log"):
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(name)
    (ctx / ".dockerignore").write_text("*.log\n**/*.log\n!c.log\n")
    return ctx


def test_select_and_walk_respect_ignore(context: Path) -> None:
    rules = IgnoreRules.load(context)
    assert select(context, "*.txt", rules) == ["a.txt", "b.txt"]
    assert select(context, "*.log", rules) == ["c.log"]  # re-included by !
    assert select(context, "dir/*/y.txt", rules) == ["dir/sub/y.txt"]
    assert select(context, "missing", rules) == []
    assert walk(context, "dir", rules) == ["dir/sub", "dir/x.txt", "dir/sub/y.txt"]


def test_hash_sees_content_and_mode(context: Path) -> None:
    before = hash_paths(context, ["a.txt"])
    (context / "a.txt").chmod(0o600)
    after_mode = hash_paths(context, ["a.txt"])
    (context / "a.txt").write_text("changed")
    assert len({before, after_mode, hash_paths(context, ["a.txt"])}) == 3


def test_source_may_not_leave_context() -> None:
    assert clean_source("/a/../b", "Containerfile:3") == "b"
    with pytest.raises(Invalid, match="outside the build context"):
        clean_source("../etc/passwd", "Containerfile:3")


def test_compose_default_dockerfile_name_falls_back_to_a_containerfile(tmp_path: Path) -> None:
    from shoal.images.build import find_containerfile

    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    assert find_containerfile(tmp_path, tmp_path / "Dockerfile") == tmp_path / "Containerfile"
    (tmp_path / "Containerfile").unlink()
    with pytest.raises(NotFound):
        find_containerfile(tmp_path, tmp_path / "Dockerfile")
