"""Atomic file writes: a file is written under a temporary name beside its target and renamed
into place when complete, so no partial file ever exists. New files get the mode any new file
gets (0666 less the umask). A write that fails raises WriteError (engine.errors)."""
from __future__ import annotations

import errno
import glob
import os
import re
import secrets
from pathlib import Path

from engine.errors import WriteError


def directory_of(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.parent if str(path.parent) else Path(".")


TEMP_TOKEN_BYTES = 4   # a temporary name is .NAME.<8 hex digits><suffix>


def create_temp(path: str | os.PathLike, suffix: str = ".part") -> tuple[int, str]:
    """A new, exclusive file beside ``path`` (fd, name), created with mode 0666 so that the
    umask decides its permissions as for any new file (mkstemp would force 0600)."""
    path = Path(path)
    directory = directory_of(path)
    for _ in range(100):
        tmp = directory / f".{path.name}.{secrets.token_hex(TEMP_TOKEN_BYTES)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(directory))


def leftovers(path: str | os.PathLike, suffix: str = ".part") -> list[Path]:
    """The temporary files create_temp made beside ``path`` and nobody renamed (a writer that was
    killed): only a writer of ``path`` makes these names."""
    path = Path(path)
    name = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}}{re.escape(suffix)}")
    return [p for p in directory_of(path).glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}") if name.fullmatch(p.name)]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Publish ``data`` at ``path`` with an atomic rename (after an fsync)."""
    path = Path(path)
    directory = directory_of(path)
    if not directory.is_dir():
        raise WriteError(f"{path}: output directory {directory} does not exist")
    try:
        fd, tmp = create_temp(path)
    except OSError as e:
        raise WriteError(f"{path}: cannot write to {directory} ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteError(f"{path}: cannot write ({e.strerror})") from None
        raise
