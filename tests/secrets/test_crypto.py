"""The secrets key and envelopes: round trip, tampering, wrong keys, rotation, key files."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from shoal.model.errors import Invalid
from shoal.secrets.crypto import (
    KEY_BYTES,
    KeyFile,
    KeyMismatch,
    Keyring,
    SecretKeys,
    Tampered,
    envelope_key_id,
    key_id,
    open_key_file,
    parse_key,
)

VALUE = b"s3cr3t-value-\x00\xff binary too"


def key(n: int) -> bytes:
    return bytes([n]) * KEY_BYTES


def test_round_trip_and_envelope_names_its_key() -> None:
    ring = Keyring(key(1))
    sealed = ring.encrypt(VALUE, "secret a v1")
    assert VALUE not in sealed and base64.b64encode(VALUE) not in sealed
    assert envelope_key_id(sealed) == key_id(key(1)) == ring.current_id
    assert len(ring.current_id) == 8
    assert ring.decrypt(sealed, "secret a v1") == VALUE
    # a fresh nonce every time: the same value never seals to the same bytes
    assert ring.encrypt(VALUE, "secret a v1") != sealed


def test_tampered_ciphertext_is_a_clear_error() -> None:
    ring = Keyring(key(1))
    doc = json.loads(ring.encrypt(VALUE, "secret a v1"))
    raw = bytearray(base64.b64decode(doc["ct"]))
    raw[0] ^= 1
    doc["ct"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(Tampered, match="secret a v1: the stored ciphertext fails authentication"):
        ring.decrypt(json.dumps(doc).encode(), "secret a v1")
    with pytest.raises(Tampered, match="not a valid secret envelope"):
        ring.decrypt(b"garbage", "secret a v1")


def test_envelope_moved_to_another_place_does_not_open() -> None:
    ring = Keyring(key(1))
    sealed = ring.encrypt(VALUE, "secret a v1")
    with pytest.raises(Tampered):
        ring.decrypt(sealed, "secret b v1")
    with pytest.raises(Tampered):
        ring.decrypt(sealed, "secret a v2")


def test_wrong_key_names_both_keys_and_never_the_value() -> None:
    sealed = Keyring(key(1)).encrypt(VALUE, "secret a v1")
    with pytest.raises(KeyMismatch) as caught:
        Keyring(key(2)).decrypt(sealed, "secret a v1")
    text = str(caught.value)
    assert key_id(key(1)) in text and key_id(key(2)) in text
    assert "--secrets-key-file" in text


def test_rotation_keyring_opens_old_and_seals_with_new() -> None:
    old = Keyring(key(1))
    sealed_old = old.encrypt(VALUE, "config c v3")
    both = Keyring(key(2), key(1))
    assert both.current_id == key_id(key(2))
    assert both.decrypt(sealed_old, "config c v3") == VALUE
    resealed = both.encrypt(both.decrypt(sealed_old, "config c v3"), "config c v3")
    assert envelope_key_id(resealed) == key_id(key(2))
    assert Keyring(key(2)).decrypt(resealed, "config c v3") == VALUE
    with pytest.raises(KeyMismatch):
        Keyring(key(2)).decrypt(sealed_old, "config c v3")


def test_digest_is_keyed_not_a_plain_hash() -> None:
    import hashlib

    one, two = Keyring(key(1)), Keyring(key(2))
    assert one.digest(VALUE) == one.digest(VALUE)
    assert one.digest(VALUE) != two.digest(VALUE)
    assert one.digest(VALUE) != one.digest(VALUE + b"x")
    assert one.digest(VALUE) != hashlib.sha256(VALUE).hexdigest()


def test_key_file_made_at_first_start_0600_and_kept(tmp_path: Path) -> None:
    first = open_key_file(tmp_path)
    assert first.path == tmp_path / "secrets.key"
    assert first.path.stat().st_mode & 0o777 == 0o600
    assert len(first.path.read_bytes()) == KEY_BYTES
    assert open_key_file(tmp_path).load() == first.load()


def test_operator_key_file_forms_and_checks(tmp_path: Path) -> None:
    raw = os.urandom(KEY_BYTES)
    for name, content in {
        "raw": raw,
        "hex": raw.hex().encode() + b"\n",
        "b64": base64.b64encode(raw) + b"\n",
    }.items():
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o600)
        assert SecretKeys.open(tmp_path / "data", path).keyring.current == raw
    loose = tmp_path / "loose"
    loose.write_bytes(raw)
    loose.chmod(0o644)
    with pytest.raises(Invalid, match="readable by others"):
        open_key_file(tmp_path, loose)
    with pytest.raises(Invalid, match="cannot read the secrets key file"):
        open_key_file(tmp_path, tmp_path / "missing")
    with pytest.raises(Invalid, match="does not hold a secrets key"):
        parse_key(b"too short", "F")


def test_pending_key_promoted_or_discarded(tmp_path: Path) -> None:
    keys = SecretKeys.open(tmp_path)
    old = keys.keyring.current
    assert keys.pending_keyring() is None
    keys.file.write_pending(key(9))
    assert keys.file.pending.stat().st_mode & 0o777 == 0o600
    pending = keys.pending_keyring()
    assert pending is not None and pending.current == key(9) and key_id(old) in pending.keys
    keys.file.promote()
    assert KeyFile(keys.file.path).load() == key(9) and not keys.file.pending.exists()
    keys.file.write_pending(key(8))
    keys.file.discard_pending()
    assert KeyFile(keys.file.path).load() == key(9)
