"""`python -m shoal.runtime.reaper --ready-fd N --pid-file F -- CMD…`: outlive a detaching CMD.

`runc exec --detach` is the only mode in which runc hands a terminal's pty master over a console
socket, and it exits as soon as the exec'd process runs, so nobody would be left to learn that
process's exit code. This helper becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`, as
containerd's shim does) and runs CMD; the process CMD leaves behind is then re-parented to it.
Once CMD exited 0 it writes the pid CMD wrote to F (a line) to `--ready-fd` and closes that fd,
reaps the process and exits with its status (128+N for a death by signal N). When CMD fails, the
fd is closed without a pid and the helper exits with CMD's code.

SIGHUP, SIGINT, SIGTERM and SIGQUIT are forwarded to the process (to CMD while it runs). Standard
library only, started with `python -S`: one runs per interactive exec, for as long as it lasts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
UNKNOWN_EXIT = 255
"""Exit code when the process was never re-parented here, so its status cannot be known."""


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Reaper:
    def __init__(self, ready_fd: int, pid_file: str, argv: list[str]) -> None:
        self.ready_fd = ready_fd
        self.pid_file = pid_file
        self.argv = argv
        self.target: int | None = None

    def forward(self, signo: int, _frame: object) -> None:
        if self.target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.target, signo)

    def run(self) -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            print(f"reaper: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return UNKNOWN_EXIT
        for signo in FORWARDED:
            signal.signal(signo, self.forward)
        child = subprocess.Popen(self.argv, close_fds=True)
        self.target = child.pid
        code = child.wait()
        if code != 0:
            os.close(self.ready_fd)
            return code if code > 0 else 128 - code
        with open(self.pid_file) as f:
            self.target = int(f.read().strip())
        os.write(self.ready_fd, f"{self.target}\n".encode())
        os.close(self.ready_fd)
        return self.reap(self.target)

    def reap(self, pid: int) -> int:
        """Reap children until `pid` is among them; its status is ours."""
        while True:
            try:
                got, status = os.waitpid(-1, 0)
            except ChildProcessError:
                # Not re-parented yet (runc's intermediate process is exiting), or never will be.
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    print(f"reaper: process {pid} ended elsewhere: no status", file=sys.stderr)
                    return UNKNOWN_EXIT
                time.sleep(0.005)
                continue
            except InterruptedError:
                continue
            if got == pid:
                return exit_code(status)


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[0] != "--ready-fd" or argv[2] != "--pid-file" or argv[4] != "--":
        print(
            "usage: python -m shoal.runtime.reaper --ready-fd N --pid-file F -- CMD…",
            file=sys.stderr,
        )
        return 2
    return Reaper(int(argv[1]), argv[3], argv[5:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
