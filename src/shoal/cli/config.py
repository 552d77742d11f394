"""`shoal config`: load a Compose project, validate it and print it normalised."""

from __future__ import annotations

import click

from shoal.cli.output import OUTPUT_FORMATS, emit, fail, warn


@click.command("config")
@click.option("-f", "--file", "files", multiple=True, help="Compose file (repeatable).")
@click.option("-n", "--project-name", "name", help="Project (stack) name.")
@click.option("--env-file", "env_files", multiple=True, help="Environment file (repeatable).")
@click.option("--profile", "profiles", multiple=True, help="Activate a profile (repeatable).")
@click.option(
    "-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="yaml", show_default=True
)
@click.option("--services", "list_services", is_flag=True, help="Print the service names.")
@click.option("--volumes", "list_volumes", is_flag=True, help="Print the volume names.")
@click.option("--networks", "list_networks", is_flag=True, help="Print the network names.")
@click.option("--profiles", "list_profiles", is_flag=True, help="Print the profile names.")
@click.option("--images", "list_images", is_flag=True, help="Print the image names.")
@click.option("-q", "--quiet", is_flag=True, help="Only validate; print nothing.")
def config(
    files: tuple[str, ...],
    name: str | None,
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
    output: str,
    list_services: bool,
    list_volumes: bool,
    list_networks: bool,
    list_profiles: bool,
    list_images: bool,
    quiet: bool,
) -> None:
    """Validate a Compose project and print it normalised, as `docker compose config` does.

    Exits 0 when the project is valid, 1 with the file, line and key of the first error.
    """
    from shoal.compose.loader import LoadOptions, load_project
    from shoal.model.compose import to_compose_dict
    from shoal.model.errors import ShoalError

    options = LoadOptions(
        files=files,
        project_name=name,
        env_files=env_files or None,
        profiles=profiles or None,
    )
    if list_profiles:
        options.profiles = ["*"]
    try:
        loaded = load_project(options)
    except ShoalError as exc:
        fail(exc)
    for warning in loaded.warnings:
        warn(warning)
    if quiet:
        return
    doc = loaded.document
    listing: list[str] | None = None
    if list_services:
        listing = list(doc.get("services") or {})
    elif list_volumes:
        listing = list(doc.get("volumes") or {})
    elif list_networks:
        listing = list(doc.get("networks") or {})
    elif list_profiles:
        found = {p for s in (doc.get("services") or {}).values() for p in s.get("profiles") or []}
        listing = sorted(found)
    elif list_images:
        listing = [
            s.get("image") or f"{doc['name']}-{n}" for n, s in (doc.get("services") or {}).items()
        ]
    if listing is not None:
        if output == "json":
            emit(listing, output)
        else:
            for item in listing:
                click.echo(item)
        return
    emit(to_compose_dict(loaded.project), output)
