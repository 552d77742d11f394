"""Executing a parsed Containerfile: stages built on demand, one step per instruction.

FROM, ARG, WORKDIR, COPY, ADD and RUN live here; config-only instructions are in
`config_steps.py`. Every filesystem-changing step looks up the build cache first, so a warm
rebuild of an unchanged context runs nothing. Stages are built lazily: `--target` and
`COPY --from` pull in only the stages they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from shoal.images.build import config_steps
from shoal.images.build.args import ArgScope
from shoal.images.build.cache import BuildCache, chain_key
from shoal.images.build.context import IgnoreRules
from shoal.images.build.layer import LayerWriter, add_upper_dir
from shoal.images.build.parser import Containerfile, Instruction, Stage
from shoal.images.build.run import RunFailed, RunSpec, resolve_user, run_step
from shoal.images.build.sources import plan_copy, write_copy
from shoal.images.build.state import StageState
from shoal.images.build.words import expand, split_words
from shoal.images.content import ContentStore
from shoal.images.manifest import Descriptor, host_arch
from shoal.images.rootfs import prepare_rootfs, release_rootfs
from shoal.model.errors import NotFound, ShoalError

T = TypeVar("T")
_COPY_FLAGS = {"COPY": {"from", "chown", "chmod", "link"}, "ADD": {"chown", "chmod", "link"}}


class Builder:
    """One build: the parsed file, the context, the build args and the cache."""

    def __init__(
        self,
        store: ContentStore,
        context: Path,
        parsed: Containerfile,
        build_args: dict[str, str],
        no_cache: bool,
        log: Callable[[str], None],
    ) -> None:
        self.store, self.context, self.parsed, self.log = store, context, parsed, log
        self.args = ArgScope(build_args)
        self.cache = BuildCache(store, enabled=not no_cache)
        self.rules = IgnoreRules.load(context)
        self.escape = parsed.escape
        self.built: dict[int, StageState] = {}
        self.runs = 0  # RUN steps actually executed (not cached)
        numbered = list(parsed.global_args)
        for stage in parsed.stages:
            numbered += [stage.base, *stage.body]
        self.step_no = {id(inst): n for n, inst in enumerate(numbered, start=1)}
        self.total = len(numbered)
        self.tmp = Path(tempfile.mkdtemp(dir=store.root, prefix=".build-"))

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # driving ------------------------------------------------------------------------------------

    def run(self, target: str | None) -> StageState:
        for inst in self.parsed.global_args:
            self._announce(inst)
            self._wrap(inst, lambda inst=inst: self._declare_global(inst))  # type: ignore[misc]
        index = self.parsed.stage_index(target) if target else len(self.parsed.stages) - 1
        state = self.stage(index)
        for name in self.args.unused():
            self.log(f"WARNING: build argument {name} was not consumed")
        return state

    def stage(self, index: int) -> StageState:
        if index not in self.built:
            self.built[index] = self._build_stage(self.parsed.stages[index])
        return self.built[index]

    def _build_stage(self, stage: Stage) -> StageState:
        self._announce(stage.base)
        state = self._wrap(stage.base, lambda: self._from(stage.base))
        for inst in stage.body:
            self._announce(inst)
            self._wrap(inst, lambda inst=inst: self._step(state, inst))  # type: ignore[misc]
        return state

    def _announce(self, inst: Instruction) -> None:
        self.log(f"STEP {self.step_no[id(inst)]}/{self.total}: {inst.text}")

    def _wrap(self, inst: Instruction, fn: Callable[[], T]) -> T:
        """Run a step; errors without a location get this instruction's file:line."""
        try:
            return fn()
        except ShoalError as exc:
            if exc.message.startswith(f"{inst.file}:"):
                raise
            raise type(exc)(f"{inst.where}: {inst.name}: {exc.message}", hint=exc.hint) from None

    def _step(self, state: StageState, inst: Instruction) -> None:
        handler = config_steps.HANDLERS.get(inst.name)
        if handler is not None:
            handler(state, inst, self.escape)
            state.add_history(chain_key(state.key, inst.text), inst.text)
        elif inst.name == "ARG":
            self.args.declare(inst, state.args, state.env_map(), self.escape)
            state.add_history(
                chain_key(state.key, ArgScope.cache_text(inst, state.args)), inst.text
            )
        elif inst.name == "WORKDIR":
            self._workdir(state, inst)
        elif inst.name in ("COPY", "ADD"):
            self._copy(state, inst)
        elif inst.name == "RUN":
            self._run(state, inst)
        elif inst.name == "ONBUILD":
            raise inst.error("ONBUILD is not supported", hint="run the steps in the child image")
        else:  # pragma: no cover - the parser knows only the instructions handled above
            raise inst.error(f"{inst.name} cannot be used here")

    # FROM and ARG -------------------------------------------------------------------------------

    def _from(self, inst: Instruction) -> StageState:
        env = self.args.from_env()
        for key, value in inst.flags:
            if key != "platform":
                raise inst.error(f"unknown FROM option --{key}", hint="FROM takes --platform")
            wanted = expand(value, env, self.escape)
            if wanted not in (f"linux/{host_arch()}", "linux"):
                raise inst.error(
                    f"cannot build for platform {wanted}: this builder runs RUN natively",
                    hint=f"drop --platform, or use linux/{host_arch()} (this machine)",
                )
        image = expand(inst.args.split()[0], env, self.escape)
        if not image:
            raise inst.error("FROM names no image", hint="check the ARG used in FROM")
        for stage in self.parsed.stages:
            if stage.name == image.lower() and stage.base is not inst:
                if self.step_no[id(stage.base)] > self.step_no[id(inst)]:
                    raise inst.error(f"stage {image!r} is defined later in the file")
                return self.stage(stage.index).fork()
        if image == "scratch":
            return StageState(key="scratch")
        self._ensure_image(image)
        return StageState.from_image(self.store, image)

    def _declare_global(self, inst: Instruction) -> None:
        self.args.declare(inst, self.args.global_args, {}, self.escape)

    def _ensure_image(self, ref: str) -> str:
        try:
            return self.store.resolve(ref)
        except NotFound:
            pass
        self.log(f"pulling {ref}")
        from shoal.images.registry import RegistryClient

        async def pull() -> str:
            async with RegistryClient() as client:
                return (await client.pull(ref, self.store)).digest

        return asyncio.run(pull())

    # filesystem steps ---------------------------------------------------------------------------

    def _commit_layer(
        self, state: StageState, inst: Instruction, key: str, write: Callable[[LayerWriter], None]
    ) -> None:
        """Use the cached layer for `key`, or write a new one with `write` and cache it."""
        cached = self.cache.get(key)
        if cached is not None:
            self.log("--> CACHED")
            state.add_layer(key, cached[0], cached[1], inst.text)
            return
        with LayerWriter(self.store) as layer:
            write(layer)
        assert layer.descriptor is not None
        self.cache.put(key, layer.descriptor, layer.diff_id)
        self.log(f"--> {layer.descriptor.digest[7:19]} ({layer.descriptor.size} bytes)")
        state.add_layer(key, layer.descriptor, layer.diff_id, inst.text)

    def _workdir(self, state: StageState, inst: Instruction) -> None:
        path = expand(inst.args, state.env_map(), self.escape)
        if not path.startswith("/"):
            path = f"{(state.config.WorkingDir or '/').rstrip('/')}/{path}"
        path = "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
        state.config.WorkingDir = path
        key = chain_key(state.key, f"WORKDIR {path}")
        parts = path.strip("/").split("/") if path != "/" else []
        missing = [
            "/".join(parts[: n + 1])
            for n in range(len(parts))
            if not state.is_dir(self.store, "/" + "/".join(parts[: n + 1]))
        ]
        if not missing:
            state.add_history(key, inst.text)
            return

        def write(layer: LayerWriter) -> None:
            for directory in missing:
                layer.add_dir(directory)

        self._commit_layer(state, inst, key, write)

    @contextlib.contextmanager
    def _source_root(
        self, state: StageState, inst: Instruction, source: str | None
    ) -> Iterator[tuple[Path, IgnoreRules | None, str]]:
        """The directory COPY reads from, its ignore rules, and its identity for the cache."""
        if source is None:
            yield self.context, self.rules, "context"
            return
        stages = self.parsed.stages
        found = next((s for s in stages if s.name == source.lower()), None)
        if found is None and source.isdigit() and int(source) < len(stages):
            found = stages[int(source)]
        if found is not None:
            built = self.stage(found.index)
            digest, identity = built.commit(self.store), f"stage:{built.key}"
        else:
            digest = self._ensure_image(source)
            identity = f"image:{digest}"
        mount_dir = Path(tempfile.mkdtemp(dir=self.tmp, prefix="from-"))
        try:
            yield prepare_rootfs(self.store, digest, mount_dir), None, identity
        finally:
            release_rootfs(mount_dir)
            shutil.rmtree(mount_dir, ignore_errors=True)

    def _copy(self, state: StageState, inst: Instruction) -> None:
        for key, _value in inst.flags:
            if key not in _COPY_FLAGS[inst.name]:
                raise inst.error(f"unknown {inst.name} option --{key}")
        env = state.env_map()
        words = (
            [expand(w, env, self.escape) for w in inst.json_args]
            if inst.json_args is not None
            else split_words(inst.args, env, self.escape)
        )
        if len(words) < 2:
            raise inst.error(f"{inst.name} needs a source and a destination")
        srcs, dest = words[:-1], words[-1]
        if inst.name == "ADD":
            for src in srcs:
                if "://" in src or src.startswith("git@"):
                    raise inst.error(
                        f"cannot ADD the remote source {src!r}: builds have no network",
                        hint="download it into the build context and ADD or COPY the file",
                    )
        owner = None
        chown = inst.flag("chown")
        if chown:
            passwd = state.read_text(self.store, "/etc/passwd")
            owner = resolve_user(
                expand(chown, env), passwd, state.read_text(self.store, "/etc/group")
            )
        chmod = inst.flag("chmod")
        if chmod is not None and not re.fullmatch(r"[0-7]{3,4}", chmod):
            raise inst.error(f"invalid --chmod {chmod!r}", hint="an octal mode, e.g. 0755")
        mode = int(chmod, 8) if chmod else None
        source = inst.flag("from")
        with self._source_root(state, inst, expand(source, env) if source else None) as (
            root,
            rules,
            identity,
        ):
            entries, content = plan_copy(
                inst,
                root,
                srcs,
                dest,
                state.config.WorkingDir or "/",
                rules,
                lambda p: state.is_dir(self.store, p),
                extract_archives=inst.name == "ADD",
            )
            key = chain_key(state.key, inst.text, " ".join(words), identity, content)
            self._commit_layer(
                state, inst, key, lambda layer: write_copy(layer, entries, owner, mode, inst)
            )

    def _run(self, state: StageState, inst: Instruction) -> None:
        for key, value in inst.flags:
            if not (key == "network" and value == "none"):
                raise inst.error(
                    f"RUN option --{key} is not supported",
                    hint="RUN always runs without network; --mount is not supported",
                )
        args = config_steps.command_of(state, inst, inst.args)
        key = chain_key(state.key, inst.text, repr(args))
        created = " ".join(args) if inst.json_args is None else inst.text
        cached = self.cache.get(key)
        if cached is not None:
            self.log("--> CACHED")
            state.add_layer(key, cached[0], cached[1], f"RUN {created}")
            return
        spec = RunSpec(
            args, state.run_env(), state.config.WorkingDir or "/", state.config.User or ""
        )
        made: list[tuple[Descriptor, str]] = []

        def capture(upper: Path) -> None:
            with LayerWriter(self.store) as layer:
                add_upper_dir(layer, upper)
            assert layer.descriptor is not None
            made.append((layer.descriptor, layer.diff_id))

        self.runs += 1
        try:
            run_step(self.store, state.commit(self.store), spec, self.tmp, self.log, capture)
        except RunFailed as failed:
            raise inst.error(
                f"the command exited with code {failed.code}; its last output:\n{failed.output}",
                hint="fix the command; the build log above shows its full output",
            ) from None
        descriptor, diff_id = made[0]
        self.cache.put(key, descriptor, diff_id)
        self.log(f"--> {descriptor.digest[7:19]} ({descriptor.size} bytes)")
        state.add_layer(key, descriptor, diff_id, f"RUN {created}")
