"""`shoal secret …` and `shoal config create|ls|inspect|rm`; reading a project's secret values.

Values are read here, on the client (a `file:` relative to the project, an `environment:`
variable of this shell, a config's `content:`), sent base64 over the API and never printed:
listings and `inspect` show names, stacks, versions and keyed digests. `shoal config` with no
subcommand stays the Compose `config` (validate and print a project).
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from shoal.cli import config as compose_config
from shoal.cli.common import ago, client, handle_errors, output_option, print_rows

KINDS = ("secret", "config")


# --- a project's values (shoal deploy) ---------------------------------------------------------


def _read(kind: str, key: str, spec: Any) -> bytes | None:
    """One declared secret's/config's value; None for an external one."""
    where = f"{kind}s.{key}"
    from shoal.model.errors import Invalid

    if spec.external:
        return None
    if spec.file is not None:
        try:
            return Path(spec.file).read_bytes()
        except FileNotFoundError:
            raise Invalid(
                f"{where}.file: {spec.file} does not exist",
                hint="paths are relative to the project directory (the Compose file's)",
            ) from None
        except OSError as exc:
            raise Invalid(f"{where}.file: cannot read {spec.file}: {exc.strerror}") from None
    if spec.environment is not None:
        value = os.environ.get(spec.environment)
        if value is None:
            raise Invalid(
                f"{where}.environment: variable {spec.environment} is not set",
                hint=f"export {spec.environment} before `shoal deploy`",
            )
        return value.encode()
    content = getattr(spec, "content", None)
    if content is not None:
        return str(content).encode()
    raise Invalid(
        f"{where}: needs `file:`, `environment:`" + (" or `content:`" if kind == "config" else "")
    )


def read_values(project: Any) -> list[dict[str, str]]:
    """`{kind, name, data}` (base64) for each declared, non-external secret and config."""
    from shoal.secrets.records import cluster_name

    stack = project.name or ""
    out = []
    for kind, table in (("secret", project.secrets), ("config", project.configs)):
        for key, spec in table.items():
            value = _read(kind, key, spec)
            if value is not None:
                name = cluster_name(stack, key, spec)
                out.append({"kind": kind, "name": name, "data": base64.b64encode(value).decode()})
    return out


def without_values(doc: dict[str, Any]) -> dict[str, Any]:
    """The project document to send: configs' inline `content:` left out (sent as values)."""
    for config in (doc.get("configs") or {}).values():
        config.pop("content", None)
    return doc


# --- the commands, one set per kind ---------------------------------------------------------


def _read_source(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        from shoal.model.errors import Invalid

        raise Invalid(f"cannot read {source}: {exc.strerror}") from None


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    from shoal.model.errors import Invalid

    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise Invalid(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value if sep else ""
    return labels


def _row(info: dict[str, Any]) -> dict[str, Any]:
    latest = info["versions"][-1] if info["versions"] else {}
    return {
        **info,
        "version": latest.get("version", ""),
        "stack": info.get("stack") or "-",
        "updated": ago(latest.get("created_at")),
        "used_by": ",".join(info.get("used_by") or []) or "-",
    }


def _commands(kind: str, group: click.Group) -> None:
    plural = f"{kind}s"

    @group.command("create")
    @click.argument("name")
    @click.argument("source", default="-", metavar="[FILE|-]")
    @click.option("--label", "labels", multiple=True, help="Label KEY=VALUE (repeatable).")
    @handle_errors
    def create(name: str, source: str, labels: tuple[str, ...]) -> None:
        data = base64.b64encode(_read_source(source)).decode()
        body = {"name": name, "data": data, "labels": _labels(labels)}
        with client() as api:
            info = api.request("POST", f"/v1/{plural}", json=body)
        click.echo(f"{kind} {info['name']} created (version {info['versions'][-1]['version']})")

    create.help = f"Create a {kind} from FILE, or from stdin (`-`, the default)."

    @group.command("ls")
    @output_option
    @handle_errors
    def ls(output: str) -> None:
        with client() as api:
            found = api.request("GET", f"/v1/{plural}")
        rows = [_row(i) for i in found] if output == "table" else found
        print_rows(rows, ["name", "stack", "version", "updated", "used_by"], output)

    ls.help = f"List {plural}: stack, latest version, who uses them (never their values)."

    @group.command("inspect")
    @click.argument("name")
    @handle_errors
    def inspect(name: str) -> None:
        with client() as api:
            click.echo(json.dumps(api.request("GET", f"/v1/{plural}/{name}"), indent=2))

    inspect.help = f"A {kind}'s metadata and versions as JSON (never its value)."

    @group.command("rm")
    @click.argument("names", nargs=-1, required=True)
    @handle_errors
    def rm(names: tuple[str, ...]) -> None:
        with client() as api:
            for name in names:
                api.request("DELETE", f"/v1/{plural}/{name}")
                click.echo(f"{kind} {name} removed")

    rm.help = f"Remove {plural} (refused while a service uses one)."


@click.group("secret")
def secret() -> None:
    """Secrets: encrypted at rest, mounted at /run/secrets/<name> in the tasks that use them."""


_commands("secret", secret)


@secret.command("rotate-key")
@handle_errors
def rotate_key() -> None:
    """A new encryption key: every secret and config re-encrypted with it (one transaction)."""
    with client() as api:
        result = api.request("POST", "/v1/secrets/rotate-key")
    click.echo(
        f"key rotated: now {result['key_id']}, {result['reencrypted']} version(s) re-encrypted"
    )


class _ConfigGroup(click.Group):
    """`shoal config` is also the Compose `config`: without a subcommand it runs that."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[-f FILE …] [OPTIONS] | create|ls|inspect|rm …")


@click.group(
    "config",
    cls=_ConfigGroup,
    invoke_without_command=True,
    params=list(compose_config.config.params),
    help=inspect.cleandoc(compose_config.config.help or "")
    + "\n\nSubcommands manage cluster configs (mounted into the tasks that use them).",
)
@click.pass_context
def config(ctx: click.Context, /, **options: Any) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(compose_config.config, **options)


_commands("config", config)
