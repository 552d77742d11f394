"""Container log files: the on-disk format, size-based rotation, rotation-aware reading.

Format: one JSON object per line, `{"time": 1700000000.25, "stream": "stdout", "text": "hi"}`
(the fields of `base.LogLine`; `text` without its newline). A directory holds `container.log`
(being written) and up to `max_files - 1` rotated files, `container.log.1` the newest of them.

The monitor writes; agents read, possibly while it writes. Each record is appended with one
`write()`, so a reader sees whole records except at the very end of the file, which it keeps
until the newline arrives. A reader holds the file open, so a rotation (a rename) never loses
what it has not read yet; only files rotated out twice between two polls are skipped.

Deliberately sync and free of pydantic and asyncio: the monitor imports this module, and each
container pays for the monitor's imports in start latency and memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO, Generic, NamedTuple, Self, TypeVar

T = TypeVar("T")

LOG_NAME = "container.log"
MAX_LINE = 16 * 1024
"""Longer lines are split into records of this many bytes (Docker splits at 16 KiB too)."""


class Record(NamedTuple):
    time: float
    stream: str
    text: str


def encode(record: Record) -> bytes:
    fields = {"time": record.time, "stream": record.stream, "text": record.text}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(raw: bytes) -> Record | None:
    """The record on one line, or None for a damaged line (skipped rather than fatal)."""
    try:
        obj = json.loads(raw)
        record = Record(float(obj["time"]), str(obj["stream"]), str(obj["text"]))
    except (ValueError, KeyError, TypeError):
        return None
    return record if record.stream in ("stdout", "stderr") else None


class LineSplitter:
    """Cuts a byte stream into text lines; a line without its newline waits for more bytes."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        lines: list[str] = []
        while True:
            cut = self._buf.find(b"\n")
            if cut < 0 or cut > self._max:
                break
            lines.append(self._text(self._buf[:cut]))
            del self._buf[: cut + 1]
        while len(self._buf) >= self._max:
            lines.append(self._text(self._buf[: self._max]))
            del self._buf[: self._max]
        return lines

    def flush(self) -> list[str]:
        """What is left at end of stream, as a last (unterminated) line."""
        if not self._buf:
            return []
        text = self._text(self._buf)
        self._buf.clear()
        return [text]

    @staticmethod
    def _text(raw: bytes | bytearray) -> str:
        return bytes(raw).decode("utf-8", errors="replace")


class LogWriter:
    """Appends records to `<log_dir>/container.log`, rotating when it would pass `max_bytes`."""

    def __init__(self, log_dir: Path, *, max_bytes: int, max_files: int) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self._path = log_dir / LOG_NAME
        self._max_bytes = max_bytes
        self._max_files = max(1, max_files)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, text: str, time: float) -> None:
        data = encode(Record(time, stream, text))
        if self._size and self._size + len(data) > self._max_bytes:
            self._rotate()
        os.write(self._fd, data)
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        keep = self._max_files - 1
        if keep == 0:
            self._path.unlink(missing_ok=True)
        else:
            for n in range(keep - 1, 0, -1):
                older = self._path.with_name(f"{LOG_NAME}.{n}")
                if older.exists():
                    older.rename(self._path.with_name(f"{LOG_NAME}.{n + 1}"))
            self._path.rename(self._path.with_name(f"{LOG_NAME}.1"))
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def rotated_files(log_dir: Path) -> list[Path]:
    """The rotated files that exist, oldest first."""
    found: list[tuple[int, Path]] = []
    for path in log_dir.glob(f"{LOG_NAME}.*"):
        suffix = path.name[len(LOG_NAME) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found, reverse=True)]


class FollowedFile(Generic[T]):
    """A log file read as it grows, complete lines only, followed across rotations (a new file
    renamed over the old one: what the reader holds is drained before it moves on). Subclasses
    say what a batch of lines means (`_parse`)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._ino: int | None = None
        self._buf = b""

    def _parse(self, lines: list[bytes]) -> list[T]:
        raise NotImplementedError

    def poll(self) -> list[T]:
        """What was appended since the last call, following the file across rotations."""
        out: list[T] = []
        while True:
            try:
                ino_now: int | None = os.stat(self._path).st_ino
            except FileNotFoundError:
                ino_now = None
            out.extend(self._drain())
            if ino_now == self._ino or ino_now is None:
                return out
            # Rotated (or created) since we opened: what we hold is complete, go to the new file.
            if not self._reopen():
                return out

    def _reopen(self) -> bool:
        self.close()
        try:
            self._file = self._path.open("rb")
        except FileNotFoundError:
            return False
        self._ino = os.fstat(self._file.fileno()).st_ino
        return True

    def _drain(self) -> list[T]:
        if self._file is None:
            return []
        data = self._file.read()
        if not data:
            return []
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        return self._parse(lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._ino = None
        self._buf = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LogReader(FollowedFile[Record]):
    """Reads what a log directory holds, then (through `poll`) what gets appended."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir / LOG_NAME)
        self._dir = log_dir

    def _parse(self, lines: list[bytes]) -> list[Record]:
        return _records(lines)

    def read_existing(self) -> list[Record]:
        """Every record so far, rotated files first. Call once, before `poll`."""
        # Open the current file before listing rotated ones: if a rotation races with us, the
        # file we hold shows up among the rotated ones (same inode) and is read only once.
        self._reopen()
        out: list[Record] = []
        for path in rotated_files(self._dir):
            try:
                with path.open("rb") as f:
                    if self._ino is not None and os.fstat(f.fileno()).st_ino == self._ino:
                        break
                    out.extend(_records(f.read().split(b"\n")[:-1]))
            except FileNotFoundError:
                continue
        out.extend(self.poll())
        return out


def _records(lines: list[bytes]) -> list[Record]:
    return [r for r in map(decode, lines) if r is not None]
