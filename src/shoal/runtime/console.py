"""Terminals for interactive exec: pty sizes, a pty master received over a console socket,
and non-blocking reads and writes of terminal and pipe fds that never read ahead.

`ConsoleSocket` is the listening end of `runc exec --tty --console-socket`: runc connects and
sends the pty master it created in the container (one fd, SCM_RIGHTS). Reads hand out one
chunk at a time and writes wait while the fd is full, so a slow peer stalls the command
instead of filling memory.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct
import termios
from pathlib import Path

CHUNK = 64 * 1024
"""Bytes read from a terminal or pipe at once: one WebSocket frame at most."""
Size = tuple[int, int]
"""A terminal size: (columns, rows)."""


def set_size(fd: int, size: Size) -> None:
    """Resize the terminal of `fd` (a pty master or slave); its foreground group gets SIGWINCH."""
    cols, rows = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> Size:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return cols, rows


async def _until_ready(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def read_chunk(fd: int) -> bytes:
    """Up to CHUNK bytes from a non-blocking fd; b"" at its end (EIO: a pty whose last slave
    was closed)."""
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await _until_ready(fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


async def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking fd, waiting (not buffering) while it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _until_ready(fd, write=True)


def _recv_fds(conn: socket.socket, most: int = 4) -> list[int]:
    """The fds of one message, close-on-exec from the start (`socket.recv_fds` drops its
    flags argument in Python 3.11: a fork meanwhile would inherit them)."""
    size = array.array("i").itemsize
    _, ancillary, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(most * size), socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % size])
    return list(fds)


class ConsoleSocket:
    """A listening unix socket at `path` that runc connects to, to hand over a pty master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(path))
            os.chmod(path, 0o600)
            self._sock.listen(1)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    async def receive(self, timeout: float = 10.0) -> int:
        """The first fd sent by the first connection (close-on-exec set, non-blocking)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            conn, _ = await loop.sock_accept(self._sock)
            with conn:
                conn.setblocking(False)
                while True:
                    try:
                        fds = _recv_fds(conn)
                        break
                    except BlockingIOError:
                        await _until_ready(conn.fileno())
        if not fds:
            raise OSError(errno.EBADMSG, "the console socket's peer sent no file descriptor")
        for extra in fds[1:]:
            os.close(extra)
        os.set_blocking(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
