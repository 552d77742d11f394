"""conmon's k8s-file log format, read as LogLines (with follow across conmon's rotations)."""

from __future__ import annotations

import builtins
import os
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from .base import LogLine, Stream


class KubeLogReader:
    """Reads conmon's k8s-file log (`<RFC 3339 time> <stream> <P|F> <text>`; P marks a piece
    of a longer line), then (through `poll`) what gets appended. conmon rotates by writing a
    fresh file and renaming it over the old one; the reader drains the file it holds first."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._ino: int | None = None
        self._buf = b""
        self._pieces: dict[bytes, tuple[float, list[str]]] = {}
        self._second: tuple[bytes, float] = (b"", 0.0)

    def read_existing(self) -> builtins.list[LogLine]:
        self._reopen()
        return self.poll()

    def poll(self) -> builtins.list[LogLine]:
        out: builtins.list[LogLine] = []
        while True:
            try:
                ino_now: int | None = os.stat(self._path).st_ino
            except FileNotFoundError:
                ino_now = None
            out.extend(self._drain())
            if ino_now == self._ino or ino_now is None or not self._reopen():
                return out

    def _reopen(self) -> bool:
        if self._file is not None:
            self._file.close()
            self._file, self._ino, self._buf = None, None, b""
        try:
            self._file = self._path.open("rb")
        except FileNotFoundError:
            return False
        self._ino = os.fstat(self._file.fileno()).st_ino
        return True

    def _drain(self) -> builtins.list[LogLine]:
        if self._file is None:
            return []
        data = self._file.read()
        if not data:
            return []
        raw = (self._buf + data).split(b"\n")
        self._buf = raw.pop()
        out: builtins.list[LogLine] = []
        for record in raw:
            line = self._parse(record)
            if line is not None:
                out.append(line)
        return out

    def _parse(self, record: bytes) -> LogLine | None:
        parts = record.split(b" ", 3)
        if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
            return None  # damaged: skip rather than fail
        stamp, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3].decode(errors="replace") if len(parts) == 4 else ""
        try:
            when = self._time(stamp)
        except ValueError:
            return None
        first, pieces = self._pieces.pop(stream, (when, []))
        if tag == b"P":
            self._pieces[stream] = (first, [*pieces, text])
            return None
        name: Stream = "stderr" if stream == b"stderr" else "stdout"
        return LogLine(time=first, stream=name, text="".join([*pieces, text]))

    def _time(self, stamp: bytes) -> float:
        """`2026-11-25T19:30:50.705206098+00:00` → Unix seconds; the whole-second part is
        cached, as consecutive lines mostly share it."""
        dot = stamp.find(b".", 19)
        zone_at = max(stamp.rfind(b"+"), stamp.rfind(b"-"), stamp.rfind(b"Z"))
        if dot < 0 or zone_at < dot:
            return datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")).timestamp()
        key = stamp[:dot] + stamp[zone_at:]
        if key != self._second[0]:
            iso = key.decode().replace("Z", "+00:00")
            self._second = (key, datetime.fromisoformat(iso).timestamp())
        fraction = stamp[dot + 1 : zone_at]
        return self._second[1] + int(fraction) / 10.0 ** len(fraction)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> KubeLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
