"""Helpers for loader tests: write Compose files into a temp dir and load them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.compose.loader import LoadedProject, LoadOptions, load_project

Loader = Callable[..., LoadedProject]


@pytest.fixture
def load(tmp_path: Path) -> Loader:
    """`load(compose_text, *more_files, env={...}, name=..., files={path: text})`."""

    def _load(
        *texts: str,
        env: dict[str, str] | None = None,
        name: str | None = "proj",
        files: dict[str, str] | None = None,
        **options: Any,
    ) -> LoadedProject:
        for rel, content in (files or {}).items():
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        paths = []
        for i, text in enumerate(texts):
            path = tmp_path / f"compose{i}.yaml"
            path.write_text(text)
            paths.append(path)
        return load_project(
            LoadOptions(
                files=paths, project_name=name, environ=env or {}, working_dir=tmp_path, **options
            )
        )

    return _load
