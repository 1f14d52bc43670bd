"""Image files in and out (OpenCV), with RGB channel order and atomic writes."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode to uint8/uint16, gray (H, W) or RGB (H, W, 3); an alpha channel is dropped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: unsupported pixel type {img.dtype} (8- or 16-bit images only)")
    if img.ndim == 3:
        if img.shape[2] == 4:
            log.warning("%s: ignoring the alpha channel", path)
            img = img[:, :, :3]
        if img.shape[2] == 1:
            img = img[:, :, 0]
        else:
            img = img[:, :, ::-1]  # OpenCV's BGR -> RGB
    return np.ascontiguousarray(img)


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Encode by extension and publish with an atomic rename, so no partial file ever exists."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    out = img[:, :, ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(out))
    if not ok:
        raise InputError(f"{path}: cannot encode a {img.dtype} image as '{ext}'")
    write_bytes_atomic(path, buf.tobytes())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: output directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as e:
        raise InputError(f"{path}: cannot write to {directory} ({e.strerror})") from None
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
            raise InputError(f"{path}: cannot write ({e.strerror})") from None
        raise


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def check_writable(path: str | os.PathLike) -> None:
    """Fail before any compute if the output cannot be created."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: output directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{path}: output directory {directory} is not writable")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if path.suffix and not cv2.haveImageWriter(str(path)) and path.suffix.lower() not in (".npz", ".npy"):
        raise InputError(f"{path}: no image encoder for '{path.suffix}'")
