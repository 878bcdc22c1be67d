"""An exclusive lock on an open file, for one process at a time: the operating system's own file locks.

The standard library's locks rather than the `filelock` package: the lock is taken on the journal itself (no
extra lock file left in the user's quarantine), the core install gains no dependency, and the operating system
drops the lock when its holder dies, even by SIGKILL, so a crashed apply never leaves a stale lock behind.
`fcntl` and `msvcrt` are imported where they are used, so that `import dupaudit` needs neither (tested with
`fcntl` hidden).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# Windows byte-range locks are mandatory (a locked byte cannot be read by another process), so the lock covers one
# byte far past the end of any journal: a second process cannot take the lock, and every process can still read.
_WINDOWS_LOCKED_BYTE = 2**31 - 2


def lock_exclusive(fd: int) -> None:
    """Lock the open file `fd` without waiting; OSError when another process holds the lock."""
    if sys.platform == "win32":
        import msvcrt

        _at_locked_byte(fd, lambda: msvcrt.locking(fd, msvcrt.LK_NBLCK, 1))
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def unlock(fd: int) -> None:
    """Release the lock before the file is closed (Windows may release the lock of a closed file only later)."""
    if sys.platform == "win32":
        import msvcrt

        _at_locked_byte(fd, lambda: msvcrt.locking(fd, msvcrt.LK_UNLCK, 1))
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _at_locked_byte(fd: int, call: Callable[[], None]) -> None:
    """Run `call` with the file position at the locked byte (msvcrt locks from there), then put it back."""
    position = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, _WINDOWS_LOCKED_BYTE, os.SEEK_SET)
    try:
        call()
    finally:
        os.lseek(fd, position, os.SEEK_SET)
