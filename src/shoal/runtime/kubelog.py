"""conmon's k8s-file log format, read as LogLines (with follow across conmon's rotations)."""

from __future__ import annotations

import builtins
from datetime import datetime
from pathlib import Path

from .base import LogLine, Stream
from .logs import FollowedFile


class KubeLogReader(FollowedFile[LogLine]):
    """Reads conmon's k8s-file log (`<RFC 3339 time> <stream> <P|F> <text>`; P marks a piece
    of a longer line), then (through `poll`) what gets appended. conmon rotates by writing a
    fresh file and renaming it over the old one; the reader drains the file it holds first."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._pieces: dict[bytes, tuple[float, list[str]]] = {}
        self._second: tuple[bytes, float] = (b"", 0.0)

    def read_existing(self) -> builtins.list[LogLine]:
        self._reopen()
        return self.poll()

    def _parse(self, lines: builtins.list[bytes]) -> builtins.list[LogLine]:
        return [line for line in map(self._line, lines) if line is not None]

    def _line(self, record: bytes) -> LogLine | None:
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
