"""What a deploy does with a stack's secrets and configs.

The CLI reads each value client-side and sends it with the deploy (`SentValue`s); here each
top-level secret/config becomes its cluster object (`<stack>_<key>` unless `name:` is set; an
`external: true` one must exist already), a new version is staged only when its digest
changed, and every service gets the versions it uses (`Service.secret_versions`). A service
whose versions changed is an update: its tasks roll and get the new value. The plan shows
`secrets.<key>: v1 → v2`, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shoal.model.cluster import SecretRef, Service
from shoal.model.compose import ComposeProject
from shoal.model.compose_resources import ConfigSpec, SecretSpec
from shoal.model.errors import Invalid
from shoal.secrets.records import Kind, SentValue, check_name, cluster_name
from shoal.secrets.store import SecretStore, versions_in_use
from shoal.store import Compare, Op


@dataclass
class DeploySecrets:
    refs: dict[str, dict[str, SecretRef]] = field(default_factory=dict)  # service → refs
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


def _declared(project: ComposeProject) -> Iterable[tuple[Kind, str, SecretSpec | ConfigSpec]]:
    for key, secret in project.secrets.items():
        yield Kind.SECRET, key, secret
    for key, config in project.configs.items():
        yield Kind.CONFIG, key, config


def _sent(
    values: list[SentValue], project: ComposeProject, stack: str
) -> dict[tuple[Kind, str], bytes]:
    declared = {(k, cluster_name(stack, key, s)) for k, key, s in _declared(project)}
    out: dict[tuple[Kind, str], bytes] = {}
    for item in values:
        if (item.kind, item.name) not in declared:
            raise Invalid(
                f"a value was sent for {item.kind} {item.name}, which the project does not declare"
            )
        out[(item.kind, item.name)] = item.value()
    return out


async def resolve(
    secrets: SecretStore,
    stack: str,
    project: ComposeProject,
    values: list[SentValue],
    services: list[Service],
    now: float,
) -> DeploySecrets:
    """Stage every declared secret/config and give each service the versions it uses."""
    result = DeploySecrets()
    if not project.secrets and not project.configs:
        if values:
            raise Invalid("values were sent for secrets, but the project declares none")
        return result
    sent = _sent(values, project, stack)
    result.compares, result.ops = await secrets.key_guard()
    versions: dict[tuple[Kind, str], SecretRef] = {}
    for kind, key, spec in _declared(project):
        name = check_name(kind, cluster_name(stack, key, spec))
        if spec.external:
            found = await secrets.get(kind, name)
            if found is None or not found[0].versions:
                raise Invalid(
                    f"{kind.plural}.{key}: external {kind} {name} does not exist",
                    hint=f"create it first: `shoal {kind} create {name} FILE`",
                )
            version = found[0].latest.version
        else:
            value = sent.get((kind, name))
            if value is None and isinstance(spec, ConfigSpec) and spec.content is not None:
                value = spec.content.encode()
            if value is None:
                raise Invalid(
                    f"{kind.plural}.{key}: no value was sent for {kind} {name}",
                    hint="deploy with `shoal deploy`, which reads `file:`, `environment:` and "
                    "`content:` on your machine",
                )
            labels = {k: str(v) for k, v in (spec.labels or {}).items()}
            in_use = versions_in_use(services, kind, name)
            staged = await secrets.stage(
                kind, name, value, stack=stack, labels=labels, now=now, in_use=in_use
            )
            result.compares += staged.compares
            result.ops += staged.ops
            version = staged.version
        versions[(kind, key)] = SecretRef(kind=str(kind), name=name, version=version)
    for svc_name, svc in project.services.items():
        refs: dict[str, SecretRef] = {}
        for kind, uses in ((Kind.SECRET, svc.secrets), (Kind.CONFIG, svc.configs)):
            for use in uses or []:
                ref = versions.get((kind, use.source))
                if ref is None:
                    raise Invalid(
                        f"services.{svc_name}.{kind.plural}: {kind} {use.source!r} is not "
                        f"declared under top-level `{kind.plural}:`"
                    )
                refs[f"{kind.plural}.{use.source}"] = ref
        result.refs[svc_name] = refs
    return result


def _shown(ref: SecretRef | None, other: SecretRef | None) -> str | None:
    if ref is None:
        return None
    if other is not None and other.name != ref.name:
        return f"{ref.name} v{ref.version}"
    return f"v{ref.version}"


def ref_changes(
    old: dict[str, SecretRef], new: dict[str, SecretRef]
) -> list[tuple[str, str | None, str | None]]:
    """(path, old, new) for each secret/config whose version (or object) a service changes."""
    return [
        (path, _shown(old.get(path), new.get(path)), _shown(new.get(path), old.get(path)))
        for path in sorted(set(old) | set(new))
        if old.get(path) != new.get(path)
    ]
