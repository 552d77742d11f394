"""Load a Compose project: files → interpolate → validate → extends/merge/include → model.

The one entry point is `load_project(LoadOptions(...))`. Every error is a `ComposeError` naming
file, line, column and key path; warnings come back with the project, never silently dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from shoal.compose import cluster_warnings, consistency, project_name, schema
from shoal.compose.canonical import canonicalize
from shoal.compose.dotenv import read_env_file
from shoal.compose.extends import apply_extends
from shoal.compose.interpolate import InterpolationError, interpolate
from shoal.compose.merge import merge_documents, strip_markers
from shoal.compose.normalize import normalize, select_profiles
from shoal.compose.paths import absolute, resolve_document
from shoal.compose.yamlsrc import Document, SourceMap, load_documents
from shoal.model.compose import ComposeProject
from shoal.model.errors import ComposeError, KeyPath, Location, format_path

T = TypeVar("T")

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = {
    "compose.yaml": "compose.override.yaml",
    "compose.yml": "compose.override.yml",
    "docker-compose.yaml": "docker-compose.override.yaml",
    "docker-compose.yml": "docker-compose.override.yml",
}


@dataclass(frozen=True)
class ComposeWarning:
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass
class LoadOptions:
    files: Sequence[str | Path] = ()
    project_name: str | None = None
    env_files: Sequence[str | Path] | None = None  # None: <project dir>/.env if it exists
    environ: Mapping[str, str] | None = None  # None: the process environment
    profiles: Sequence[str] | None = None  # None: COMPOSE_PROFILES
    working_dir: str | Path | None = None


@dataclass
class LoadedProject:
    project: ComposeProject
    document: dict[str, Any]  # the normalised document the model was built from
    files: list[Path]
    warnings: list[ComposeWarning] = field(default_factory=list)


def find_default_files(directory: Path) -> list[Path]:
    """`compose.yaml` (or its older names) in `directory` or a parent, plus its override file."""
    for folder in (directory, *directory.parents):
        for name in DEFAULT_FILES:
            candidate = folder / name
            if candidate.is_file():
                found = [candidate]
                override = folder / OVERRIDE_FILES[name]
                if override.is_file():
                    found.append(override)
                return found
    raise ComposeError(
        f"no Compose file found in {directory} or its parents",
        hint="pass one with -f FILE (looked for " + ", ".join(DEFAULT_FILES) + ")",
    )


class _Session:
    """State of one load: the environment, every document's source map, warnings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.sources: list[SourceMap] = []
        self.warnings: list[ComposeWarning] = []
        self.extended: dict[str, dict[str, Any]] = {}
        self.including: list[str] = []
        self.parsed: dict[Path, list[Document]] = {}

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def locate(self, path: KeyPath) -> Location | None:
        for source in reversed(self.sources):
            if path in source.positions:
                return source.locate(path)
        for source in reversed(self.sources):
            loc = source.locate(path)
            if loc is not None and len(path) > 0:
                return loc
        return None

    def parse(self, path: Path) -> list[Document]:
        """The file's YAML documents, read and parsed once per load (the project name is
        looked up before the files are loaded for real)."""
        if path not in self.parsed:
            try:
                text = path.read_text("utf-8-sig")
            except FileNotFoundError:
                raise
            except (OSError, UnicodeDecodeError) as exc:
                raise ComposeError(f"cannot read {path}: {exc}") from None
            self.parsed[path] = load_documents(text, str(path))
        return self.parsed[path]

    def read_file(self, path: Path, base_dir: Path) -> list[dict[str, Any]]:
        """One file's documents: interpolated, validated, paths resolved, `extends` applied.

        Documents keep their `!reset`/`!override` markers: they act when merged over what came
        before (earlier documents and files).
        """
        docs: list[dict[str, Any]] = []
        for doc in self.parse(path):
            self.sources.append(doc.source)
            try:
                data = interpolate(_empty_services_as_mappings(doc.data), self.lookup)
                schema.validate(strip_markers(data))
                data = resolve_document(data, base_dir)
            except InterpolationError as exc:
                raise ComposeError(
                    exc.message, path=exc.path, location=doc.source.locate(exc.path)
                ) from None
            except ComposeError as exc:
                if exc.location is None:
                    exc.location = doc.source.locate(exc.path)
                raise
            docs.append(self._located(partial(apply_extends, data, path, self.read_extended)))
        return docs

    def read_extended(self, path: Path) -> dict[str, Any]:
        """Another file that a service extends, its documents merged."""
        key = str(path)
        if key not in self.extended:
            merged: dict[str, Any] = {}
            for doc in self.read_file(path, path.parent):
                merged = merge_documents(merged, doc)
            self.extended[key] = merged
        return self.extended[key]

    def _located(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ComposeError as exc:
            if exc.location is None:
                exc.location = self.locate(exc.path)
            raise

    def load_files(self, files: Sequence[Path], base_dir: Path) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for path in files:
            try:
                for doc in self.read_file(path, base_dir):
                    merged = self._located(partial(merge_documents, merged, doc))
            except FileNotFoundError:
                raise ComposeError(
                    f"compose file {path} not found", hint="check the path given with -f"
                ) from None
        return self._located(lambda: self.include(merged, base_dir))

    def include(self, doc: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        entries = doc.get("include")
        if not entries:
            return doc
        out = {k: v for k, v in doc.items() if k != "include"}
        for i, entry in enumerate(entries):
            spec = {"path": entry} if isinstance(entry, str) else dict(entry)
            paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
            files = [Path(absolute(p, base_dir)) for p in paths]
            key = str(files[0])
            if key in self.including:
                chain = " -> ".join([*self.including, key])
                raise ComposeError(f"include cycle detected: {chain}", path=("include", i))
            given_dir = spec.get("project_directory")
            project_dir = Path(absolute(given_dir, base_dir)) if given_dir else files[0].parent
            env_files = spec.get("env_file")
            env_paths = (
                [
                    Path(absolute(e, base_dir))
                    for e in (env_files if isinstance(env_files, list) else [env_files])
                ]
                if env_files
                else [project_dir / ".env"]
            )
            sub_env = {**_dotenv(env_paths, self.env, explicit=bool(env_files)), **self.env}
            sub = _Session(sub_env)
            sub.including = [*self.including, key]
            try:
                data = sub.load_files(files, project_dir)
            finally:
                self.sources.extend(sub.sources)
                self.warnings.extend(sub.warnings)
            for section in ("services", "networks", "volumes", "secrets", "configs", "models"):
                imported = data.get(section) or {}
                mine = dict(out.get(section) or {})
                for name, value in imported.items():
                    if name in mine and mine[name] != value:
                        raise ComposeError(
                            f"{section}.{name} conflicts with imported resource from {key}",
                            path=(section, name),
                        )
                    mine[name] = value
                if mine:
                    out[section] = mine
        return out


def _empty_services_as_mappings(doc: dict[str, Any]) -> dict[str, Any]:
    """`services: {web: }` declares an empty service, as `docker compose` reads it."""
    services = doc.get("services")
    if isinstance(services, dict) and any(v is None for v in services.values()):
        return {**doc, "services": {k: {} if v is None else v for k, v in services.items()}}
    return doc


def _dotenv(paths: Sequence[Path], environ: Mapping[str, str], *, explicit: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    for path in paths:
        if not explicit and not path.is_file():
            continue
        if path.is_dir():
            continue

        def lookup(name: str) -> str | None:
            return environ.get(name, values.get(name))

        for key, value in read_env_file(path, lookup=lookup).items():
            if value is not None:
                values[key] = value
    return values


class _CollectWarnings(logging.Handler):
    """Turns the interpolator's unset-variable log records into warnings, once per message."""

    def __init__(self, into: list[ComposeWarning]) -> None:
        super().__init__(logging.WARNING)
        self.into = into
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.seen:
            self.seen.add(message)
            self.into.append(ComposeWarning(message))


@contextmanager
def _collect_warnings(into: list[ComposeWarning]) -> Iterator[None]:
    logger = logging.getLogger("shoal.compose.interpolate")
    handler = _CollectWarnings(into)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def load_project(options: LoadOptions) -> LoadedProject:
    """Load, merge, validate and normalise a Compose project into the model."""
    warnings: list[ComposeWarning] = []
    with _collect_warnings(warnings):
        loaded = _load(options)
    loaded.warnings[:0] = warnings
    return loaded


def _load(options: LoadOptions) -> LoadedProject:
    cwd = Path(options.working_dir or os.getcwd()).absolute()
    environ = dict(os.environ if options.environ is None else options.environ)
    if options.files:
        files = [Path(absolute(str(f), cwd)) for f in options.files]
    else:
        files = find_default_files(cwd)
    project_dir = files[0].parent
    if options.env_files is not None:
        env_paths = [Path(absolute(str(p), cwd)) for p in options.env_files]
        dotenv = _dotenv(env_paths, environ, explicit=True)
    else:
        dotenv = _dotenv([project_dir / ".env"], environ, explicit=False)
    env = {**dotenv, **environ}
    session = _Session(env)

    name = options.project_name or env.get("COMPOSE_PROJECT_NAME")
    if not name:
        name = _declared_name(files, session) or project_name.from_directory(project_dir.name)
    project = project_name.check(name)
    env["COMPOSE_PROJECT_NAME"] = project

    doc = session.load_files(files, project_dir)
    profiles = options.profiles
    if profiles is None:
        profiles = [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]

    def read_envfile(path: str) -> dict[str, str | None]:
        return read_env_file(path, lookup=session.lookup)

    def finish() -> tuple[dict[str, Any], ComposeProject]:
        def warn(message: str, path: KeyPath) -> None:
            session.warnings.append(ComposeWarning(message, session.locate(path)))

        data = canonicalize(strip_markers(doc), lookup=session.lookup, warn=warn)
        data = select_profiles(data, profiles)
        data = normalize(data, project, session.lookup, read_envfile)
        if "version" in doc:
            message = "the attribute `version` is obsolete, it will be ignored"
            session.warnings.append(ComposeWarning(message, session.locate(("version",))))
        for message, path in cluster_warnings.findings(data):
            session.warnings.append(ComposeWarning(message, session.locate(path)))
        consistency.check(data)
        return data, _to_model(data)

    data, model = session._located(finish)
    return LoadedProject(project=model, document=data, files=files, warnings=session.warnings)


def _declared_name(files: Sequence[Path], session: _Session) -> str | None:
    """The last `name:` declared in the files, interpolated (it may use variables too)."""
    found: str | None = None
    for path in files:
        try:
            docs = session.parse(path)
        except (OSError, ComposeError):
            continue  # the real load reports it, with its location
        for doc in docs:
            value = doc.data.get("name")
            if value is None:
                continue
            if not isinstance(value, str):
                raise ComposeError(
                    f"validating {path.name}: name must be a string",
                    path=("name",),
                    location=doc.source.locate(("name",)),
                )
            try:
                found = interpolate(value, session.lookup, ("name",))
            except InterpolationError as exc:
                raise ComposeError(exc.message, location=doc.source.locate(("name",))) from None
    return found


def _to_model(data: dict[str, Any]) -> ComposeProject:
    from pydantic import ValidationError

    try:
        return ComposeProject.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The models keep loc equal to the Compose key path (no aliases, no model unions).
        path = tuple(p for p in first["loc"] if isinstance(p, (str, int)))
        raise ComposeError(f"{format_path(path)}: {first['msg']}", path=path) from None
