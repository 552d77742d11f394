"""`shoal image import|ls|inspect|tag|rm|prune`: the image store of this machine.

These commands work on the local store (`$SHOAL_DATA_DIR/agent/images`, or `--root`), the one
the agent on this machine runs containers from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from shoal.cli.common import handle_errors, output_option, print_rows

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Image store directory (default $SHOAL_DATA_DIR/agent/images).",
)


def local_store(root: Path | None = None) -> Any:
    """The image store of this machine's agent (where `shoal up` runs containers from)."""
    from shoal.images.content import ContentStore

    if root is None:
        data = os.environ.get("SHOAL_DATA_DIR")
        if data:
            base = Path(data).absolute()
        else:
            from shoal.client.http import default_data_dir

            base = default_data_dir()
        root = base / "agent" / "images"
    return ContentStore(root)


def _familiar(name: str) -> str:
    """`docker.io/library/busybox:latest` → `busybox:latest`, as Docker shows it."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{size}B"  # pragma: no cover


@click.group("image")
def image() -> None:
    """Manage the images on this machine."""


@image.command("import")
@click.argument("tar", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False)
@click.option("--cmd", help="Default command of a rootfs image, e.g. 'httpd -f -p 80'.")
@click.option("--entrypoint", help="Entrypoint of a rootfs image.")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for a rootfs image (repeat).")
@click.option("-w", "--workdir", help="Working directory of a rootfs image.")
@root_option
@handle_errors
def import_(
    tar: Path,
    name: str | None,
    cmd: str | None,
    entrypoint: str | None,
    env: tuple[str, ...],
    workdir: str | None,
    root: Path | None,
) -> None:
    """Import a rootfs tarball as NAME:TAG, or a `docker save` / OCI archive."""
    import shlex

    from shoal.images.importer import DEFAULT_ENV, import_image
    from shoal.images.manifest import ContainerConfig

    config = ContainerConfig(
        Cmd=shlex.split(cmd) if cmd else None,
        Entrypoint=shlex.split(entrypoint) if entrypoint else None,
        Env=[*DEFAULT_ENV, *env],
        WorkingDir=workdir,
    )
    for ref in import_image(local_store(root), tar, name, config):
        click.echo(ref)


@image.command("ls")
@output_option
@root_option
@handle_errors
def ls(output: str, root: Path | None) -> None:
    """List tagged images."""
    from shoal.images.image import load_image
    from shoal.model.errors import ShoalError

    store = local_store(root)
    rows = []
    for ref, digest in store.list_tags().items():
        row: dict[str, Any] = {"ref": ref, "name": _familiar(ref), "digest": digest}
        try:
            loaded = load_image(store, digest)
            row.update(size=loaded.size, created=loaded.config.created, error=None)
        except ShoalError as exc:  # e.g. only another platform's image: list it all the same
            row.update(size=None, created=None, error=exc.message)
        row["id"] = digest.removeprefix("sha256:")[:12]
        row["size_human"] = _human(row["size"]) if row["size"] is not None else "-"
        rows.append(row)
    print_rows(rows, ["name", "id", "size_human", "created"], output)


@image.command("inspect")
@click.argument("ref")
@root_option
@handle_errors
def inspect(ref: str, root: Path | None) -> None:
    """Print an image's manifest digest, manifest and config as JSON."""
    from shoal.images.image import load_image

    loaded = load_image(local_store(root), ref)
    doc = {
        "ref": ref,
        "digest": loaded.top_digest,
        "manifest_digest": loaded.digest,
        "size": loaded.size,
        "manifest": loaded.manifest.model_dump(mode="json", by_alias=True, exclude_none=True),
        "config": loaded.config.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    click.echo(json.dumps(doc, indent=2))


@image.command("tag")
@click.argument("source")
@click.argument("target")
@root_option
@handle_errors
def tag(source: str, target: str, root: Path | None) -> None:
    """Give the image SOURCE another name TARGET."""
    store = local_store(root)
    store.set_tag(target, store.resolve(source))


@image.command("rm")
@click.argument("refs", nargs=-1, required=True)
@root_option
@handle_errors
def rm(refs: tuple[str, ...], root: Path | None) -> None:
    """Remove tags (`shoal image prune` then frees the space)."""
    store = local_store(root)
    for ref in refs:
        store.remove_tag(ref)
        click.echo(f"untagged {ref}")


@image.command("prune")
@root_option
@handle_errors
def prune(root: Path | None) -> None:
    """Delete blobs and unpacked layers that no tagged image uses."""
    from shoal.images.image import load_image
    from shoal.images.unpack import prune_layers
    from shoal.model.errors import ShoalError

    store = local_store(root)
    keep: set[str] = set()
    for digest in store.list_tags().values():
        try:
            keep.update(load_image(store, digest).config.rootfs.diff_ids)
        except ShoalError:
            continue
    freed = prune_layers(store, keep) + store.gc()
    click.echo(f"freed {_human(freed)}")


def _transfer(
    verb: str, ref: str, root: Path | None, insecure: tuple[str, ...], platform: str | None
) -> Any:
    """Pull or push with one progress bar per layer (rich), returning the client's result."""
    import asyncio

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from shoal.images.registry import RegistryClient

    store = local_store(root)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=False,
    ) as bars:
        ids: dict[str, Any] = {}

        def progress(digest: str, done: int, total: int) -> None:
            if digest not in ids:
                ids[digest] = bars.add_task(digest.removeprefix("sha256:")[:12], total=total)
            bars.update(ids[digest], completed=done, total=total)

        async def run() -> Any:
            async with RegistryClient(insecure=insecure) as client:
                if verb == "pull":
                    kwargs = {"platform": platform} if platform else {}
                    return await client.pull(ref, store, progress=progress, **kwargs)
                return await client.push(ref, store, progress=progress)

        return asyncio.run(run())


insecure_option = click.option(
    "--insecure",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Registry reached over plain HTTP (loopback registries are insecure by default).",
)


@image.command("pull")
@click.argument("ref")
@click.option("--platform", help="os/arch[/variant] (default: this machine).")
@insecure_option
@root_option
@handle_errors
def pull(ref: str, platform: str | None, insecure: tuple[str, ...], root: Path | None) -> None:
    """Pull an image from a registry (OCI distribution API) into this machine's store."""
    result = _transfer("pull", ref, root, insecure, platform)
    click.echo(
        f"pulled {result.reference} ({result.digest}, {_human(result.fetched_bytes)} "
        f"fetched in {result.fetched_blobs} blobs)"
    )


@image.command("push")
@click.argument("ref")
@insecure_option
@root_option
@handle_errors
def push(ref: str, insecure: tuple[str, ...], root: Path | None) -> None:
    """Push an image from this machine's store to its registry."""
    digest = _transfer("push", ref, root, insecure, None)
    click.echo(f"pushed {ref} ({digest})")


@image.command("build")
@click.argument(
    "context", type=click.Path(exists=True, file_okay=False, path_type=Path), default="."
)
@click.option("-t", "--tag", "tag", required=True, help="Name of the image, NAME[:TAG].")
@click.option(
    "-f",
    "--file",
    "dockerfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Containerfile (default CONTEXT/Containerfile or CONTEXT/Dockerfile).",
)
@click.option("--build-arg", "build_args", multiple=True, help="KEY=VALUE for an ARG (repeat).")
@click.option("--target", help="Build up to this stage (FROM … AS name).")
@click.option("--no-cache", is_flag=True, help="Run every step again, ignoring the layer cache.")
@root_option
@handle_errors
def build(
    context: Path,
    tag: str,
    dockerfile: Path | None,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    root: Path | None,
) -> None:
    """Build an image from a Containerfile (Dockerfile syntax) and the CONTEXT directory."""
    from shoal.images.build import build as build_image
    from shoal.model.errors import Invalid

    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not key:
            raise Invalid(f"bad --build-arg {item!r}", hint="use --build-arg KEY=VALUE")
        if not sep:  # `--build-arg KEY` takes the value from the environment, as Docker does
            if key not in os.environ:
                continue
            value = os.environ[key]
        args[key] = value
    digest = build_image(
        local_store(root),
        context,
        dockerfile,
        tag=tag,
        build_args=args,
        target=target,
        no_cache=no_cache,
        log=click.echo,
    )
    click.echo(digest)
