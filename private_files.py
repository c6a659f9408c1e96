"""Files only the switch's user may read: the database (SIP passwords, the nonce secret),
recordings and voicemail. Folders are created 0700 and files 0600 whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by this user only (0700), whatever the
    umask; an existing folder is left as the admin made it."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path) -> None:
    """The database holds SIP passwords and the nonce secret: it and its -wal/-shm companions
    (SQLite gives those the database file's mode) are 0600 whatever the umask, and an older
    file with looser bits is tightened."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


def open_private(path: Path) -> BinaryIO:
    """A new file for writing (a recording), 0600, its folders 0700."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    return os.fdopen(fd, "wb", buffering=0)
