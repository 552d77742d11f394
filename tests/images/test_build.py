"""Real builds: RUN in runc over overlayfs, COPY/ADD layers, multi-stage, cache, whiteouts."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.image import image as image_cli
from shoal.images.build import build, executor
from shoal.images.build import run as run_module
from shoal.images.build.run import RunSpec, leftover_containers, run_step
from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.model.errors import Invalid
from tests.images.busybox import busybox_path, make_busybox_image
from tests.images.layers import mounts_under

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="RUN needs root (runc, overlay mounts)"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    assert mounts_under(tmp_path) == []
    assert leftover_containers() == []
    assert not [p for p in (tmp_path / "images").glob(".build-*") if p.is_dir()]


@pytest.fixture
def base(store: ContentStore) -> str:
    make_busybox_image(store, "busybox:test")
    return "busybox:test"


def context(tmp_path: Path, containerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Containerfile").write_text(containerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def run_image(store: ContentStore, ref: str, args: list[str], tmp_path: Path) -> str:
    """Run `args` in a runc container of the image; return the output."""
    lines: list[str] = []
    spec = RunSpec(args, ["PATH=/bin"], "/", "")
    run_step(store, store.resolve(ref), spec, tmp_path / "run", lines.append, lambda _u: None)
    return "\n".join(lines)


def layer_names(store: ContentStore, digest: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(digest))) as archive:
        return archive.getnames()


def test_busybox_build(store: ContentStore, base: str, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "ARG BASE=busybox:test\n"
        "FROM $BASE\n"
        "ARG MSG=default\n"
        "ENV GREETING=hello APP=/app\n"
        "RUN mkdir /data && echo hi > /data/x && echo $MSG-$GREETING > /data/msg\n"
        "WORKDIR $APP\n"
        "COPY file.txt sub/ ./\n"
        "LABEL org.example.v=1\n"
        "EXPOSE 8080\n"
        "USER nobody\n"
        "HEALTHCHECK --interval=5s CMD wget -q localhost:8080\n"
        "STOPSIGNAL SIGINT\n"
        "COPY --chown=nobody:nogroup --chmod=600 file.txt /owned\n"
        'CMD ["cat", "file.txt"]\n',
        {"file.txt": "from the context\n", "sub/inner.txt": "inner\n"},
    )
    lines: list[str] = []
    digest = build(store, ctx, tag="app:1", build_args={"MSG": "arg"}, log=lines.append)
    assert store.resolve("app:1") == digest
    assert (
        "STEP 5/14: RUN mkdir /data && echo hi > /data/x && echo $MSG-$GREETING > /data/msg"
        in lines
    )
    loaded = load_image(store, "app:1")
    config = loaded.config.config
    assert config.Env == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GREETING=hello",
        "APP=/app",
    ]
    assert (config.WorkingDir, config.User, config.StopSignal) == ("/app", "nobody", "SIGINT")
    assert config.Cmd == ["cat", "file.txt"] and config.Labels == {"org.example.v": "1"}
    assert config.ExposedPorts == {"8080/tcp": {}}
    assert config.Healthcheck and config.Healthcheck.Interval == 5 * 10**9
    assert len(loaded.manifest.layers) == 5  # base, RUN, WORKDIR, COPY, COPY --chown
    assert len([h for h in loaded.config.history or [] if not h.empty_layer]) == 5
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(loaded.manifest.layers[4].digest))) as t:
        owned = t.getmember("owned")
    assert (owned.uid, owned.gid, owned.mode) == (65534, 65534, 0o600)
    assert sorted(layer_names(store, loaded.manifest.layers[3].digest)) == [
        "app/file.txt",
        "app/inner.txt",
    ]
    out = run_image(store, "app:1", ["cat", "/data/x", "/data/msg", "/app/inner.txt"], tmp_path)
    assert out.split() == ["hi", "arg-hello", "inner"]


def test_scratch_with_a_static_binary(store: ContentStore, tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM scratch\nCOPY busybox /bin/\nCOPY conf /etc/app\n")
    shutil.copy(busybox_path(), ctx / "busybox")
    (ctx / "conf").mkdir()
    (ctx / "conf" / "a.conf").write_text("a=1\n")
    build(store, ctx, tag="static:1", log=lambda _line: None)
    loaded = load_image(store, "static:1")
    assert [layer_names(store, layer.digest) for layer in loaded.manifest.layers] == [
        ["bin/busybox"],
        ["etc/app", "etc/app/a.conf"],
    ]
    assert (
        run_image(store, "static:1", ["/bin/busybox", "cat", "/etc/app/a.conf"], tmp_path) == "a=1"
    )


def test_multi_stage_copy_from_and_target(store: ContentStore, base: str, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "FROM busybox:test AS builder\n"
        "RUN mkdir /out && echo built > /out/artifact\n"
        "FROM scratch AS final\n"
        "COPY --from=builder /out/artifact /artifact\n"
        "COPY --from=busybox:test /bin/busybox /bin/busybox\n",
    )
    build(store, ctx, tag="multi:1", log=lambda _line: None)
    loaded = load_image(store, "multi:1")
    assert len(loaded.manifest.layers) == 2
    assert run_image(store, "multi:1", ["/bin/busybox", "cat", "/artifact"], tmp_path) == "built"

    lines: list[str] = []
    build(store, ctx, tag="multi:builder", target="builder", log=lines.append)
    assert not any("COPY" in line for line in lines)
    assert len(load_image(store, "multi:builder").manifest.layers) == 2


def test_failing_run_reports_code_and_output(
    store: ContentStore, base: str, tmp_path: Path
) -> None:
    ctx = context(tmp_path, "FROM busybox:test\nRUN echo about to fail && exit 3\n")
    with pytest.raises(Invalid) as caught:
        build(store, ctx, tag="bad:1", log=lambda _line: None)
    message = str(caught.value)
    assert "Containerfile:2: RUN echo about to fail && exit 3" in message
    assert "exited with code 3" in message and "about to fail" in message
    assert caught.value.hint


def test_cache_hit_and_miss(
    store: ContentStore, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[list[str]] = []
    real = run_module.run_step

    def counting(*args: object, **kwargs: object) -> None:
        runs.append(args[2].args)  # type: ignore[attr-defined]
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(executor, "run_step", counting)
    ctx = context(
        tmp_path,
        "FROM busybox:test\nRUN echo one > /one\nCOPY app.txt /app.txt\nRUN cat /app.txt > /two\n",
        {"app.txt": "v1"},
    )
    quiet = lambda _line: None  # noqa: E731
    build(store, ctx, tag="c:1", log=quiet)
    assert len(runs) == 2
    first = load_image(store, "c:1").config.rootfs.diff_ids

    lines: list[str] = []
    build(store, ctx, tag="c:1", log=lines.append)
    assert len(runs) == 2  # warm: no RUN at all
    assert lines.count("--> CACHED") == 3
    assert load_image(store, "c:1").config.rootfs.diff_ids == first

    (ctx / "app.txt").write_text("v2")
    build(store, ctx, tag="c:1", log=quiet)
    assert len(runs) == 3 and runs[-1][-1] == "cat /app.txt > /two"  # only the RUN after COPY
    assert run_image(store, "c:1", ["cat", "/two"], tmp_path) == "v2"

    build(store, ctx, tag="c:1", no_cache=True, log=quiet)
    assert len(runs) == 5


def test_run_deletions_become_whiteouts(store: ContentStore, base: str, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "FROM busybox:test\n"
        "RUN mkdir /d && touch /d/old\n"
        "RUN rm /etc/group && rm -r /d && mkdir /d && touch /d/new\n",
    )
    build(store, ctx, tag="wh:1", log=lambda _line: None)
    loaded = load_image(store, "wh:1")
    names = layer_names(store, loaded.manifest.layers[-1].digest)
    assert "etc/.wh.group" in names and "d/.wh..wh..opq" in names and "d/new" in names
    out = run_image(store, "wh:1", ["sh", "-c", "ls /d; test -e /etc/group || echo gone"], tmp_path)
    assert out.split() == ["new", "gone"]


def test_add_archive_dockerignore_and_remote(
    store: ContentStore, base: str, tmp_path: Path
) -> None:
    ctx = context(
        tmp_path,
        "FROM busybox:test\nADD bundle.tar.gz /opt/\nCOPY . /src/\n",
        {"keep.txt": "k", "secret.key": "s", ".dockerignore": "*.key\n"},
    )
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as archive:
        data = b"packed\n"
        info = tarfile.TarInfo("pkg/readme")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    build(store, ctx, tag="add:1", log=lambda _line: None)
    layers = load_image(store, "add:1").manifest.layers
    assert layer_names(store, layers[1].digest) == ["opt/pkg/readme"]
    assert sorted(layer_names(store, layers[2].digest)) == [
        "src",
        "src/.dockerignore",
        "src/Containerfile",
        "src/bundle.tar.gz",
        "src/keep.txt",
    ]
    (ctx / "Containerfile").write_text("FROM busybox:test\nADD https://example.com/x /x\n")
    with pytest.raises(Invalid, match=r"Containerfile:2: .*no network"):
        build(store, ctx, tag="add:2", log=lambda _line: None)
    (ctx / "Containerfile").write_text("FROM busybox:test\nCOPY secret.key /\n")
    with pytest.raises(Invalid, match=r"Containerfile:2: .*not found in the build context"):
        build(store, ctx, tag="add:3", log=lambda _line: None)


def test_cli_build(
    store: ContentStore, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(tmp_path, "FROM busybox:test\nARG X\nRUN echo $X > /x\n")
    args = ["build", "--root", str(store.root), "-t", "cli:1", "--build-arg", "X=42", str(ctx)]
    result = CliRunner().invoke(image_cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "STEP 3/3: RUN echo $X > /x" in result.output
    assert run_image(store, "cli:1", ["cat", "/x"], tmp_path) == "42"
    (ctx / "Containerfile").write_text("FROM busybox:test\nRUN\n")
    result = CliRunner().invoke(image_cli, args, catch_exceptions=False)
    assert result.exit_code == 1 and "Containerfile:2" in result.output
