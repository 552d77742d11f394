"""AES-256-GCM for secrets at rest: the server's key file, envelopes that name their key, and
keyed digests (a changed value is detected without keeping a plain hash of it anywhere).

An envelope is compact JSON: `{"v": 1, "kid": "<8 hex>", "nonce": "<b64>", "ct": "<b64>"}`; the
key id is the first 8 hex digits of sha256(key), so after `shoal secret rotate-key` the server
knows which key opens which envelope. The associated data binds an envelope to where it is
stored (kind, name, version): one copied onto another secret fails to open instead of
delivering the wrong value.

The key file holds 32 random bytes (mode 0600), created at first start under the data dir, or
is given by the operator (raw 32 bytes, 64 hex digits or base64 of 32 bytes). A rotation writes
the new key to `<file>.new` first and renames it over the file once the store transaction that
re-encrypted everything committed, so a crash in between loses nothing (see `store.startup`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal.model.errors import Invalid, ShoalError, Unavailable

KEY_BYTES = 32
NONCE_BYTES = 12
ENVELOPE_VERSION = 1
KEY_FILE_NAME = "secrets.key"
_DIGEST_LABEL = b"shoal secret digest v1"


class KeyMismatch(Unavailable):
    """An envelope (or the store) names a key this server does not hold."""


class Tampered(ShoalError):
    """An envelope fails authentication: it was altered, corrupted or moved."""


def key_id(key: bytes) -> str:
    """The first 8 hex digits of sha256(key): names a key without revealing it."""
    return hashlib.sha256(key).hexdigest()[:8]


class Keyring:
    """The current key (encrypts, digests) and any older ones still needed to decrypt."""

    def __init__(self, current: bytes, *older: bytes) -> None:
        for key in (current, *older):
            if len(key) != KEY_BYTES:
                raise Invalid(f"a secrets key must be {KEY_BYTES} bytes, not {len(key)}")
        self.current = current
        self.keys = {key_id(k): k for k in (*older, current)}
        # Digests use a key derived from the current one: the AES key itself is never reused.
        self._mac_key = hmac.new(current, _DIGEST_LABEL, hashlib.sha256).digest()

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def digest(self, value: bytes) -> str:
        """HMAC-SHA256 of `value` under (a key derived from) the current key, hex."""
        return hmac.new(self._mac_key, value, hashlib.sha256).hexdigest()

    def encrypt(self, value: bytes, where: str) -> bytes:
        """An envelope of `value` under the current key, bound to `where` (its store place)."""
        kid = self.current_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, value, _aad(kid, where))
        envelope = {
            "v": ENVELOPE_VERSION,
            "kid": kid,
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(sealed).decode(),
        }
        return json.dumps(envelope, separators=(",", ":")).encode()

    def decrypt(self, envelope: bytes, where: str) -> bytes:
        """The value sealed in `envelope` for `where`; `KeyMismatch` or `Tampered` otherwise."""
        kid, nonce, sealed = _parse(envelope, where)
        key = self.keys.get(kid)
        if key is None:
            raise KeyMismatch(
                f"{where} is encrypted with key {kid}, but this server holds "
                f"{', '.join(sorted(self.keys))}",
                hint="start the server with --secrets-key-file naming the key that encrypted it",
            )
        try:
            return AESGCM(key).decrypt(nonce, sealed, _aad(kid, where))
        except InvalidTag:
            raise Tampered(
                f"{where}: the stored ciphertext fails authentication "
                "(altered, corrupted or copied from elsewhere)",
                hint="create the secret again (remove it and deploy or `shoal secret create`)",
            ) from None


def envelope_key_id(envelope: bytes) -> str:
    """The key id an envelope names (without opening it)."""
    return _parse(envelope, "envelope")[0]


def _aad(kid: str, where: str) -> bytes:
    return f"shoal-secret-v{ENVELOPE_VERSION}\0{kid}\0{where}".encode()


def _parse(envelope: bytes, where: str) -> tuple[str, bytes, bytes]:
    try:
        doc = json.loads(envelope)
        if doc.get("v") != ENVELOPE_VERSION:
            raise ValueError(f"unknown envelope version {doc.get('v')!r}")
        kid = str(doc["kid"])
        nonce = base64.b64decode(doc["nonce"], validate=True)
        sealed = base64.b64decode(doc["ct"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise Tampered(f"{where}: not a valid secret envelope ({exc})") from None
    if len(nonce) != NONCE_BYTES:
        raise Tampered(f"{where}: not a valid secret envelope (nonce of {len(nonce)} bytes)")
    return kid, nonce, sealed


# --- the key file ------------------------------------------------------------------------------


def parse_key(raw: bytes, source: str) -> bytes:
    """32 raw bytes, or (as text) 64 hex digits or base64 of 32 bytes."""
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    with contextlib.suppress(ValueError):
        if len(text) == 2 * KEY_BYTES:
            return bytes.fromhex(text.decode("ascii"))
    with contextlib.suppress(ValueError, binascii.Error):
        decoded = base64.b64decode(text, validate=True)
        if len(decoded) == KEY_BYTES:
            return decoded
    raise Invalid(
        f"{source} does not hold a secrets key ({len(raw)} bytes)",
        hint=f"a key file holds {KEY_BYTES} random bytes, raw, as 64 hex digits or as base64: "
        "`head -c 32 /dev/urandom > FILE`",
    )


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyFile:
    """The key file and, during a rotation, its successor `<file>.new`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = path.with_name(path.name + ".new")

    def load(self) -> bytes:
        return self._read(self.path)

    def load_pending(self) -> bytes | None:
        return self._read(self.pending) if self.pending.exists() else None

    def _read(self, path: Path) -> bytes:
        try:
            info = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise Invalid(
                f"cannot read the secrets key file {path}: {exc.strerror}",
                hint="give an existing file with --secrets-key-file, or leave it out to use "
                f"<data-dir>/{KEY_FILE_NAME}",
            ) from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise Invalid(
                f"the secrets key file {path} is readable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 600 {path}",
            )
        return parse_key(raw, str(path))

    def write_pending(self, key: bytes) -> None:
        try:
            _write_private(self.pending, key, exclusive=False)
        except OSError as exc:
            raise Unavailable(
                f"cannot write the new secrets key to {self.pending}: {exc.strerror}",
                hint="the key file's directory must be writable by the server",
            ) from None

    def promote(self) -> None:
        """The pending key becomes the key file (atomically)."""
        os.replace(self.pending, self.path)
        _sync_dir(self.path.parent)

    def discard_pending(self) -> None:
        self.pending.unlink(missing_ok=True)


def open_key_file(data_dir: Path, given: Path | None = None) -> KeyFile:
    """The operator's key file, or `<data_dir>/secrets.key` (made at first start)."""
    if given is not None:
        key_file = KeyFile(given.absolute())
        key_file.load()  # fail at start, not at the first secret
        return key_file
    key_file = KeyFile(data_dir / KEY_FILE_NAME)
    if not key_file.path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            _write_private(key_file.path, os.urandom(KEY_BYTES), exclusive=True)
    return key_file


class SecretKeys:
    """What the server holds: the key file, the keyring made from it, and a lock that
    serialises rotations with the writes that must not interleave with one."""

    def __init__(self, key_file: KeyFile) -> None:
        self.file = key_file
        self.keyring = Keyring(key_file.load())
        self.lock = asyncio.Lock()

    @classmethod
    def open(cls, data_dir: Path, given: Path | None = None) -> SecretKeys:
        return cls(open_key_file(data_dir, given))

    def pending_keyring(self) -> Keyring | None:
        """The keyring with the pending key current (a rotation that may have committed)."""
        pending = self.file.load_pending()
        return Keyring(pending, self.keyring.current) if pending is not None else None
