"""Secrets and configs in the cluster store: metadata records, encrypted versions, the key guard.

Keys (values: compact JSON; envelopes: see `crypto`):
  /secrets/<name>                        SecretRecord of a secret (never a value)
  /configs/<name>                        SecretRecord of a config
  /secretdata/<kind>/<name>/<v:08d>      the envelope of one version
  /secretkey                             the id of the key every envelope is sealed with

Every write that seals or digests with the key compares and rewrites `/secretkey` in its
transaction, so it cannot interleave with a rotation (which re-seals everything, guarded by
`/secretkey`'s mod_revision, and moves it to the new key id in one transaction). Functions
here return compares and ops; the caller commits them, usually with other writes (a deploy).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from shoal.model.cluster import Event, Service
from shoal.model.codec import decode, encode
from shoal.model.errors import Conflict, NotFound
from shoal.secrets.crypto import KEY_BYTES, KeyMismatch, Keyring, SecretKeys
from shoal.secrets.records import Kind, SecretRecord, SecretVersion, check_size
from shoal.server.objects import event_op
from shoal.store import Compare, DeleteOp, Op, PutOp, Store

log = logging.getLogger(__name__)

DATA = "/secretdata/"
KEY_RECORD = "/secretkey"
KEEP_VERSIONS = 3  # older versions no service records are dropped when a new one comes


def prefix(kind: Kind) -> str:
    return f"/{kind.plural}/"


def record_key(kind: Kind, name: str) -> str:
    return f"{prefix(kind)}{name}"


def data_key(kind: Kind, name: str, version: int) -> str:
    return f"{DATA}{kind}/{name}/{version:08d}"


def where(kind: Kind, name: str, version: int) -> str:
    """How an envelope names its place (associated data, and error messages)."""
    return f"{kind} {name} v{version}"


@dataclass
class Staged:
    """The writes that make a value the latest version of a secret (or find it already is)."""

    version: int
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    created: bool = False  # a new version (False: the value is the latest one already)


def versions_in_use(services: list[Service], kind: Kind, name: str) -> set[int]:
    return {
        ref.version
        for svc in services
        for ref in svc.secret_versions.values()
        if ref.kind == kind and ref.name == name
    }


def users(services: list[Service], kind: Kind, name: str) -> list[str]:
    """The services (`stack/service`) that use the secret, by their recorded versions."""
    return sorted(
        f"{svc.stack}/{svc.name}"
        for svc in services
        if any(r.kind == kind and r.name == name for r in svc.secret_versions.values())
    )


class SecretStore:
    """Reads and the writes to stage, over one store and the server's keys."""

    def __init__(self, store: Store, keys: SecretKeys) -> None:
        self.store = store
        self.keys = keys

    @property
    def keyring(self) -> Keyring:
        return self.keys.keyring

    # --- reads -----------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str) -> tuple[SecretRecord, int] | None:
        kv = await self.store.get(record_key(kind, name))
        return (decode(SecretRecord, kv.value), kv.mod_revision) if kv is not None else None

    async def require(self, kind: Kind, name: str) -> tuple[SecretRecord, int]:
        found = await self.get(kind, name)
        if found is None:
            raise NotFound(f"no {kind} {name!r}", hint=f"list them with `shoal {kind} ls`")
        return found

    async def records(self, kind: Kind) -> list[SecretRecord]:
        kvs, _ = await self.store.range(prefix(kind))
        return [decode(SecretRecord, kv.value) for kv in kvs]

    async def value(self, kind: Kind, name: str, version: int) -> bytes:
        kv = await self.store.get(data_key(kind, name, version))
        if kv is None:
            raise NotFound(
                f"{where(kind, name, version)} is no longer stored",
                hint="deploy the stack again so its services record a current version",
            )
        return self.keyring.decrypt(kv.value, where(kind, name, version))

    # --- writes ----------------------------------------------------------------------------

    async def key_guard(self) -> tuple[list[Compare], list[Op]]:
        """The compare that pins the current key, and a write of `/secretkey` that moves its
        mod_revision: a rotation that read the secrets before this commits fails its compare
        instead of missing a secret sealed with the old key."""
        kv = await self.store.get(KEY_RECORD)
        if kv is not None and kv.value.decode() != self.keyring.current_id:
            async with self.keys.lock:  # a rotation that committed is finishing: wait for it
                pass
            kv = await self.store.get(KEY_RECORD)
        kid = self.keyring.current_id
        if kv is None:
            return [Compare.missing(KEY_RECORD)], [PutOp(KEY_RECORD, kid.encode())]
        if kv.value.decode() != kid:
            raise KeyMismatch(
                f"the secrets in the store are sealed with key {kv.value.decode()}, "
                f"this server holds key {kid}",
                hint="restart the server with --secrets-key-file naming the right key",
            )
        return [Compare.value(KEY_RECORD, "==", kid.encode())], [PutOp(KEY_RECORD, kid.encode())]

    async def stage(
        self,
        kind: Kind,
        name: str,
        value: bytes,
        *,
        stack: str,
        labels: dict[str, str],
        now: float,
        in_use: set[int],
    ) -> Staged:
        """Make `value` the latest version of `name` (a new version only if it differs)."""
        check_size(kind, name, value)
        found = await self.get(kind, name)
        key = record_key(kind, name)
        digest = self.keyring.digest(value)
        if found is None:
            record = SecretRecord(
                name=name, kind=kind, stack=stack, labels=labels, created_at=now, updated_at=now
            )
            compares = [Compare.missing(key)]
        else:
            record, rev = found
            if record.stack != stack:
                owner = f"stack {record.stack}" if record.stack else f"`shoal {kind} create`"
                raise Conflict(
                    f"{kind} {name} already exists, made by {owner}",
                    hint=f"refer to it with `external: true`, or give this {kind} another `name:`",
                )
            compares = [Compare.mod_revision(key, "==", rev)]
            if record.versions and record.latest.digest == digest:
                if record.labels == labels:
                    return Staged(record.latest.version, compares)
                relabelled = record.model_copy(update={"labels": labels, "updated_at": now})
                return Staged(record.latest.version, compares, [PutOp(key, encode(relabelled))])
        version = record.latest.version + 1 if record.versions else 1
        keep = {v.version for v in record.versions[-(KEEP_VERSIONS - 1) :]} | in_use
        dropped = [v.version for v in record.versions if v.version not in keep]
        record = record.model_copy(
            update={
                "versions": [
                    *(v for v in record.versions if v.version in keep),
                    SecretVersion(version=version, created_at=now, digest=digest),
                ],
                "labels": labels,
                "updated_at": now,
            }
        )
        ops: list[Op] = [
            PutOp(
                data_key(kind, name, version),
                self.keyring.encrypt(value, where(kind, name, version)),
            ),
            PutOp(key, encode(record)),
            *(DeleteOp(data_key(kind, name, v)) for v in dropped),
            event_op(
                event(
                    now,
                    kind,
                    "create" if version == 1 else "update",
                    name,
                    stack,
                    f"version {version}",
                )
            ),
        ]
        return Staged(version, compares, ops, created=True)

    async def removal(self, kind: Kind, name: str) -> tuple[list[Compare], list[Op]]:
        """The writes that delete a secret and every version of it."""
        _, rev = await self.require(kind, name)
        compares = [Compare.mod_revision(record_key(kind, name), "==", rev)]
        return compares, [DeleteOp(record_key(kind, name)), DeleteOp(f"{DATA}{kind}/{name}/", True)]

    async def reseal(self, new: Keyring) -> tuple[list[Compare], list[Op], int]:
        """Every version re-encrypted under `new`'s current key, every digest recomputed, and
        `/secretkey` moved: the one transaction of a rotation. Returns how many versions."""
        kv = await self.store.get(KEY_RECORD)  # first: any secret written after moves it
        compares = [Compare.mod_revision(KEY_RECORD, "==", kv.mod_revision if kv else 0)]
        ops: list[Op] = []
        count = 0
        for kind in Kind:
            kvs, _ = await self.store.range(prefix(kind))
            for kv in kvs:
                record = decode(SecretRecord, kv.value)
                compares.append(Compare.mod_revision(kv.key, "==", kv.mod_revision))
                versions = []
                for item in record.versions:
                    place = where(kind, record.name, item.version)
                    dkey = data_key(kind, record.name, item.version)
                    sealed = await self.store.get(dkey)
                    if sealed is None:
                        raise NotFound(f"{place} has no stored data: the store is inconsistent")
                    compares.append(Compare.mod_revision(dkey, "==", sealed.mod_revision))
                    value = self.keyring.decrypt(sealed.value, place)
                    ops.append(PutOp(dkey, new.encrypt(value, place)))
                    versions.append(item.model_copy(update={"digest": new.digest(value)}))
                    count += 1
                ops.append(PutOp(kv.key, encode(record.model_copy(update={"versions": versions}))))
        ops.append(PutOp(KEY_RECORD, new.current_id.encode()))
        return compares, ops, count

    async def rotate(self, now: float) -> tuple[str, int, int]:
        """A new key; every version re-sealed with it in one transaction; then the key file
        is replaced. Returns (new key id, versions re-sealed, revision)."""
        async with self.keys.lock:
            old = self.keyring
            new = Keyring(os.urandom(KEY_BYTES), *old.keys.values())
            self.keys.file.write_pending(new.current)
            try:
                compares, ops, count = await self.reseal(new)
            except BaseException:
                self.keys.file.discard_pending()
                raise
            message = f"key {old.current_id} → {new.current_id}, {count} version(s) re-sealed"
            ops.append(event_op(event(now, Kind.SECRET, "rotate-key", new.current_id, "", message)))
            result = await self.store.txn(compares, ops, [])
            if not result.succeeded:
                self.keys.file.discard_pending()
                raise Conflict(
                    "secrets changed during the key rotation; nothing was changed",
                    hint="run `shoal secret rotate-key` again",
                )
            self.keys.file.promote()
            self.keys.keyring = Keyring(new.current)
            log.warning("secrets key rotated: %s", message)
            return new.current_id, count, result.revision


def event(now: float, kind: Kind, action: str, name: str, stack: str, message: str) -> Event:
    return Event(time=now, type=str(kind), action=action, id=name, stack=stack, message=message)


async def startup(store: Store, keys: SecretKeys) -> None:
    """At server start: finish or undo a rotation a crash interrupted, then check that the
    store's secrets are sealed with the key this server holds (refuse to start otherwise)."""
    kv = await store.get(KEY_RECORD)
    stored = kv.value.decode() if kv is not None else None
    pending = keys.pending_keyring()
    if pending is not None:
        if stored == pending.current_id:  # the rotation committed: its key is the key now
            keys.file.promote()
            keys.keyring = pending
            log.warning("finished an interrupted secrets key rotation (key %s)", stored)
        else:
            keys.file.discard_pending()
    kid = keys.keyring.current_id
    if stored is None:
        await store.put(KEY_RECORD, kid.encode(), expect_mod_revision=0)
        return
    if stored == kid:
        return
    secrets = SecretStore(store, keys)
    if any([await secrets.records(kind) for kind in Kind]):
        raise KeyMismatch(
            f"the secrets in the store are sealed with key {stored}, but the key file "
            f"{keys.file.path} holds key {kid}",
            hint="start the server with --secrets-key-file naming the key that sealed them",
        )
    await store.put(KEY_RECORD, kid.encode(), expect_mod_revision=kv.mod_revision if kv else 0)
