"""A watchdog for the local Ray instance ``instrunet-ray`` starts: when the driver dies, even by
``kill -9`` (no ``atexit``, no ``ray.shutdown()``), it ends the processes the driver started.

Ray's own fate sharing ends the GCS server and the raylet with the driver, but the agents they
start (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) and workers caught starting were left
running for a minute or more (a dozen processes, in the issue that asked for this). The
watchdog is a separate process in its own session: it notes the driver's descendants every
half second and, once its pipe from the driver reads end-of-file (the driver is gone, however
it ended), sends them SIGTERM, then SIGKILL to those still running. A process is only signalled
if it is the one noted (same start time), so a reused process id is never hit.

Linux only (it reads ``/proc``); elsewhere :func:`start` does nothing.

Run as ``python -m instrunet_ray._reaper DRIVER_PID`` with the driver's pipe on stdin.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

__all__ = ["start", "descendants"]

#: Seconds between two looks at the driver's descendants.
POLL_S = 0.5
#: Seconds the processes get to end after SIGTERM, before SIGKILL.
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a process from ``/proc/PID/stat``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its end
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every process below ``root`` now (children, their children...)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None:
            parents.setdefault(st[0], []).append(int(name))
            starts[int(name)] = st[1]
    out: dict[int, int] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in out and pid in starts:
            out[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return out


def _signal_all(noted: dict[int, int], sig: int) -> list[int]:
    """Send ``sig`` to the noted processes still running as noted; their pids."""
    alive = []
    for pid, start in noted.items():
        st = _stat(pid)
        if st is None or st[1] != start:
            continue
        try:
            os.kill(pid, sig)
        except OSError:
            continue
        alive.append(pid)
    return alive


def _running(noted: dict[int, int]) -> list[int]:
    return [p for p, start in noted.items() if (_stat(p) or (0, -1))[1] == start]


def _reap(driver: int, fd: int) -> None:
    """Note the driver's descendants until ``fd`` reads end of file, then end them."""
    noted: dict[int, int] = {}
    me = os.getpid()
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            break  # end of file: the driver is gone
        if _stat(driver) is None:
            break
        noted.update(descendants(driver))
        noted.pop(me, None)
    if not _signal_all(noted, signal.SIGTERM):
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and _running(noted):
        time.sleep(0.1)
    _signal_all(noted, signal.SIGKILL)


def start() -> subprocess.Popen[bytes] | None:
    """Start the watchdog for this process (the driver); None where ``/proc`` is missing.

    The watchdog holds the read end of a pipe whose write end only this process has, so the
    pipe ends (end of file) exactly when this process does.
    """
    if not os.path.isdir("/proc/self"):
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "instrunet_ray._reaper", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the terminal's group: Ctrl-C reaches the driver, not it
            close_fds=True,
        )
    except OSError:
        return None


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """The driver ended normally (after ``ray.shutdown()``): close the pipe; the watchdog ends
    what is still running and exits."""
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(GRACE_S + 5)
    except subprocess.TimeoutExpired:
        proc.kill()


def _main(argv: Iterable[str]) -> int:
    (driver,) = (int(a) for a in argv)
    _reap(driver, 0)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(_main(sys.argv[1:]))
