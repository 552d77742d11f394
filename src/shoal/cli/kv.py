"""`shoal kv …` (keys, watches, leases) and `shoal catalog` (service discovery)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from shoal.cli.common import client, handle_errors, output_option, print_rows


def _kv(api: Any) -> Any:
    from shoal.client.kv import KV

    return KV(api)


def _duration(text: str) -> float:
    """`10`, `10s`, `500ms`, `5m`, `1h` → seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            text, scale = text[: -len(unit)], units[unit]
            break
    else:
        scale = 1.0
    try:
        seconds = float(text) * scale
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 30, 30s, 500ms, 5m)") from None
    if seconds <= 0:
        raise click.BadParameter("a duration must be positive")
    return seconds


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _text(entry: dict[str, Any]) -> str:
    from shoal.client.kv import value_bytes

    data = value_bytes(entry)
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data: use --raw or --output json>"


@click.group("kv")
def kv() -> None:
    """Read, write and watch keys; leases make keys vanish when their owner stops renewing.

    \b
    Examples:
      shoal kv put app/config '{"debug": true}'
      echo -n hello | shoal kv put app/greeting -
      shoal kv get app/config
      shoal kv ls app/
      shoal kv watch app/ --prefix
      shoal kv put app/leader me --lease "$(shoal kv lease grant 10s)" --cas 0
    """


@kv.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", type=int, help="Attach the key to this lease (it vanishes with it).")
@click.option("--cas", type=int, help="Write only if the key is at this mod_revision (0: absent).")
@output_option
@handle_errors
def put(key: str, value: str | None, lease: int | None, cas: int | None, output: str) -> None:
    """Write KEY. VALUE omitted or `-` reads the value from stdin (bytes as they are).

    \b
    Examples:
      shoal kv put app/config 'x=1'
      shoal kv put app/lock me --cas 0        # only if app/lock does not exist yet
      shoal kv put app/config 'x=2' --cas 17  # only if nobody wrote since revision 17
    """
    data = sys.stdin.buffer.read() if value in (None, "-") else str(value).encode()
    with client() as api:
        result = _kv(api).put(key, data, lease=lease, cas=cas)
    if output == "json":
        _json(result)
    else:
        click.echo(f"OK {key} revision {result['revision']}")


@kv.command("get")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--keys-only", is_flag=True, help="With --prefix: print the keys only.")
@click.option("--raw", is_flag=True, help="Write the value's bytes to stdout, unchanged.")
@output_option
@handle_errors
def get(key: str, prefix: bool, keys_only: bool, raw: bool, output: str) -> None:
    """Print KEY's value (or, with --prefix, every key and value under KEY).

    \b
    Examples:
      shoal kv get app/config
      shoal kv get app/ --prefix -o json
      shoal kv get app/logo.png --raw > logo.png
    """
    with client() as api:
        store = _kv(api)
        if raw:
            if prefix:
                raise click.UsageError("--raw reads one key, not a prefix")
            sys.stdout.buffer.write(store.get_raw(key))
            sys.stdout.buffer.flush()
            return
        result = store.list(key, keys_only=keys_only) if prefix else store.get(key)
    if output == "json":
        _json(result)
    elif not prefix:
        click.echo(_text(result))
    elif keys_only:
        for entry in result["items"]:
            click.echo(entry["key"])
    else:
        rows = [entry | {"value": _text(entry)} for entry in result["items"]]
        print_rows(rows, ["key", "value", "mod_revision", "lease"], output)


@kv.command("ls")
@click.argument("prefix", default="")
@output_option
@handle_errors
def ls(prefix: str, output: str) -> None:
    """List the keys under PREFIX (all keys without one).

    \b
    Examples:
      shoal kv ls
      shoal kv ls stacks/shop/ -o json
    """
    with client() as api:
        result = _kv(api).list(prefix, keys_only=True)
    if output == "json":
        _json(result)
        return
    print_rows(result["items"], ["key", "version", "mod_revision", "lease"], output)


@kv.command("rm")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Delete every key starting with KEY.")
@click.option("--cas", type=int, help="Delete only if the key is at this mod_revision.")
@output_option
@handle_errors
def rm(key: str, prefix: bool, cas: int | None, output: str) -> None:
    """Delete KEY (or every key under it with --prefix).

    \b
    Examples:
      shoal kv rm app/config
      shoal kv rm app/ --prefix
    """
    with client() as api:
        result = _kv(api).delete(key, prefix=prefix, cas=cas)
    if output == "json":
        _json(result)
    else:
        click.echo(f"deleted {result['deleted']} (revision {result['revision']})")


@kv.command("watch")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Watch every key starting with KEY.")
@click.option(
    "--revision", type=int, help="Start after this revision (the last one you saw); default: now."
)
@output_option
@handle_errors
def watch(key: str, prefix: bool, revision: int | None, output: str) -> None:
    """Print each change of KEY as it happens, until interrupted.

    Reconnects after a dropped connection (or a server restart) and resumes where it
    stopped, without gaps or repeats.

    \b
    Lines: `<revision> PUT <key> <value>` or `<revision> DELETE <key>`; with -o json one
    JSON object per line.
    \b
    Examples:
      shoal kv watch app/config
      shoal kv watch app/ --prefix -o json
      shoal kv watch app/ --prefix --revision 1200
    """

    def retrying(error: Exception, delay: float) -> None:
        click.echo(f"watch interrupted ({error}); reconnecting in {delay:.1f}s", err=True)

    with client() as api:
        try:
            for event in _kv(api).follow(key, prefix, revision, on_retry=retrying):
                if output == "json":
                    click.echo(json.dumps(event, separators=(",", ":")))
                elif event["type"] == "put":
                    click.echo(f"{event['mod_revision']} PUT {event['key']} {_text(event)}")
                else:
                    click.echo(f"{event['mod_revision']} DELETE {event['key']}")
        except KeyboardInterrupt:
            pass


@kv.group("lease")
def lease() -> None:
    """Leases: keys attached to one vanish when it is revoked or stops being renewed.

    \b
    Example (a key that lives as long as this shell loop):
      id=$(shoal kv lease grant 10s)
      shoal kv put app/alive yes --lease "$id"
      shoal kv lease keepalive "$id" --every 3s
    """


@lease.command("grant")
@click.argument("ttl")
@output_option
@handle_errors
def grant(ttl: str, output: str) -> None:
    """Grant a lease living TTL (`30`, `30s`, `5m`) unless kept alive; prints its id."""
    with client() as api:
        result = _kv(api).grant(_duration(ttl))
    if output == "json":
        _json(result)
    else:
        click.echo(result["id"])


@lease.command("keepalive")
@click.argument("lease_id", type=int)
@click.option("--every", help="Renew every S (`3s`) until interrupted, instead of once.")
@output_option
@handle_errors
def keepalive(lease_id: int, every: str | None, output: str) -> None:
    """Renew a lease (once, or forever with --every); fails once the lease is gone."""
    period = _duration(every) if every else None
    with client() as api:
        store = _kv(api)
        while True:
            result = store.keepalive(lease_id)
            if output == "json":
                click.echo(json.dumps(result))
            else:
                click.echo(f"lease {lease_id}: {result['remaining']}s left")
            if period is None:
                return
            try:
                time.sleep(period)
            except KeyboardInterrupt:
                return


@lease.command("revoke")
@click.argument("lease_id", type=int)
@output_option
@handle_errors
def revoke(lease_id: int, output: str) -> None:
    """End a lease now: its keys are deleted."""
    with client() as api:
        result = _kv(api).revoke(lease_id)
    if output == "json":
        _json(result)
    else:
        click.echo(f"revoked lease {lease_id}")


@lease.command("show")
@click.argument("lease_id", type=int)
@output_option
@handle_errors
def show(lease_id: int, output: str) -> None:
    """A lease's TTL, the time it has left and its keys."""
    with client() as api:
        result = _kv(api).lease(lease_id)
    if output == "json":
        _json(result)
        return
    click.echo(f"lease {lease_id}: ttl {result['ttl']}s, {result['remaining']}s left")
    for key in result["keys"]:
        click.echo(f"  {key}")


def _catalog_rows(data: Any, target: str) -> tuple[list[dict[str, Any]], list[str]]:
    if "/" not in target:
        rows = [
            s
            | {
                "vips": " ".join(s["vips"].values()),
                "ports": " ".join(
                    f"{p['published']}:{p['target']}/{p['protocol']}" for p in s["ports"]
                ),
                "ready": f"{s['ready']}/{s['total']}",
            }
            for s in data
        ]
        return rows, ["stack", "service", "mode", "vips", "ports", "ready"]
    rows = [
        e | {"task": e["task"][:12], "ready": "yes" if e["ready"] else "no"}
        for e in data["endpoints"]
    ]
    return rows, ["task", "node", "address", "port", "ready"]


@click.command("catalog")
@click.argument("target", default="", metavar="[STACK[/SERVICE]]")
@click.option("--watch", "follow", is_flag=True, help="Print again each time it changes.")
@click.option("--ready", is_flag=True, help="Only ready endpoints (with STACK/SERVICE).")
@output_option
@handle_errors
def catalog(target: str, follow: bool, ready: bool, output: str) -> None:
    """Discover services: their VIPs and ports, and each task's address and readiness.

    \b
    Examples:
      shoal catalog
      shoal catalog shop
      shoal catalog shop/web --ready -o json
      shoal catalog shop/web --watch
    """
    index: int | None = None
    shown: Any = None
    with client() as api:
        store = _kv(api)
        try:
            while True:
                data, index = store.catalog(target, ready=ready, index=index)
                if data != shown:  # a blocking query also answers when its wait ran out
                    _show_catalog(data, target, output, follow)
                    shown = data
                if not follow:
                    return
        except KeyboardInterrupt:
            pass


def _show_catalog(data: Any, target: str, output: str, follow: bool) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=None if follow else 2))
    else:
        rows, columns = _catalog_rows(data, target)
        print_rows(rows, columns, output)
