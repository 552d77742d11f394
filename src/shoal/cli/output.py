"""Printing results: YAML or JSON documents, warnings and errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

OUTPUT_FORMATS = ("yaml", "json")


def dump_yaml(data: Any) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def emit(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(dump_yaml(data), nl=False)


def warn(message: object) -> None:
    click.echo(f"warning: {message}", err=True)


def fail(message: object, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
