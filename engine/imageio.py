"""Image files in and out (OpenCV), with RGB channel order and atomic writes.

Outputs are written under a temporary name in the target folder and renamed when complete,
so no partial file ever exists; they get the mode any new file gets (0666 less the umask).
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import struct
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary PNG chunks OpenCV's decoder uses (transparency, significant bits, APNG frames);
# the others (colour profiles, gamma, text, EXIF, ...) never change the pixels it returns.
_PNG_KEPT_ANCILLARY = {b"tRNS", b"sBIT", b"acTL", b"fcTL", b"fdAT"}
# Formats that hold 16 bits per channel, losslessly (OpenCV writes others, JPEG first, as 8 bit).
LOSSLESS_16BIT = (".png", ".tif", ".tiff", ".pgm", ".ppm", ".pnm")
LOSSLESS_8BIT = (".bmp",)


def quiet_opencv() -> None:
    """OpenCV logs only errors (not its WARN lines beside our own message), unless the user
    chose a level with $OPENCV_LOG_LEVEL. For command-line tools: a library leaves it alone."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        api = getattr(cv2.utils, "logging", None)
        if api is not None:
            api.setLogLevel(api.LOG_LEVEL_ERROR)
        else:  # OpenCV 4.11 (the last for numpy < 2): the module-level call, 2 = LOG_LEVEL_ERROR
            cv2.setLogLevel(2)


def _drop_unused_png_chunks(data: bytes) -> bytes:
    """The PNG without the ancillary chunks OpenCV ignores anyway.

    libpng prints its warnings about those chunks (a bad iCCP profile, a CRC error in a text
    chunk, ...) straight to the process's stderr, where no Python code can catch them; a chunk
    it never sees cannot warn. Pixels are unchanged. Anything unexpected in the chunk layout
    returns the data as is, for the decoder to judge.
    """
    if not data.startswith(PNG_SIGNATURE):
        return data
    view, pos, keep, dropped = memoryview(data), len(PNG_SIGNATURE), [], False
    start = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = bytes(view[pos + 4: pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return data
        if ctype[0] & 0x20 and ctype not in _PNG_KEPT_ANCILLARY:  # lower-case first letter: ancillary
            keep.append(view[start:pos])
            start, dropped = end, True
        pos = end
        if ctype == b"IEND":
            break
    if not dropped:
        return data
    keep.append(view[start:])
    return b"".join(keep)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode to uint8/uint16, gray (H, W) or RGB (H, W, 3); an alpha channel is dropped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = _drop_unused_png_chunks(path.read_bytes())
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
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


def holds_16_bit(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in LOSSLESS_16BIT


def check_output_image(path: str | os.PathLike, dtype=np.uint8) -> None:
    """Before any compute: the output can be created and encoded; a 16-bit result bound for an
    8-bit format (JPEG, ...) is announced now, and will be scaled to 8 bits by write_image."""
    check_writable(path)
    if np.dtype(dtype) == np.uint16 and not holds_16_bit(path):
        log.warning("%s: '%s' holds 8 bits per channel: the 16-bit result will be written scaled to 8 bits; "
                    "use %s to keep 16 bits", path, Path(path).suffix or "(no extension)", " or ".join(LOSSLESS_16BIT[:2]))


def to_8_bit(img: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 over the full range (0 -> 0, 65535 -> 255, rounded)."""
    return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)


def write_image(path: str | os.PathLike, img: np.ndarray, *, announce: bool = True) -> None:
    """Encode by extension and publish with an atomic rename, so no partial file ever exists.

    A 16-bit image written to a format that holds 8 bits is scaled to 8 bits (with a warning
    unless ``announce`` is False: check_output_image gave it before the compute)."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    if img.dtype == np.uint16 and ext not in LOSSLESS_16BIT:
        if announce:
            log.warning("%s: '%s' holds 8 bits per channel: writing the 16-bit image scaled to 8 bits", path, ext)
        img = to_8_bit(img)
    out = img[:, :, ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(out))
    if not ok:
        raise InputError(f"{path}: cannot encode a {img.dtype} image as '{ext}'")
    write_bytes_atomic(path, buf.tobytes())


def check_index_map(path: str | os.PathLike, frames: int) -> None:
    """Before any compute: ``path`` can hold frame indices 0..frames-1 exactly."""
    check_writable(path)
    ext = Path(path).suffix.lower()
    if ext == ".npy":
        return
    if ext in LOSSLESS_16BIT and frames <= 1 << 16:
        return
    if ext in LOSSLESS_8BIT and frames <= 1 << 8:
        return
    why = ("a lossy format would change the indices" if ext not in LOSSLESS_8BIT
           else f"8 bits cannot hold {frames} frame indices")
    raise InputError(f"{path}: an index map needs .npy or a lossless 16-bit image ({', '.join(LOSSLESS_16BIT)}); "
                     f"'{ext or '(no extension)'}': {why}")


def write_index_map(path: str | os.PathLike, index: np.ndarray) -> None:
    """Which frame each pixel came from: int32 .npy, else a 16-bit (8-bit for .bmp) image."""
    if str(path).lower().endswith(".npy"):
        import io
        buf = io.BytesIO()
        np.save(buf, index)
        write_bytes_atomic(path, buf.getvalue())
    else:
        dtype = np.uint8 if Path(path).suffix.lower() in LOSSLESS_8BIT else np.uint16
        write_image(path, index.astype(dtype))


def _directory(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def create_temp(path: str | os.PathLike, suffix: str = ".part") -> tuple[int, str]:
    """A new, exclusive file beside ``path`` (fd, name), created with mode 0666 so that the
    umask decides its permissions as for any new file (mkstemp would force 0600)."""
    path = Path(path)
    directory = _directory(path)
    for _ in range(100):
        tmp = directory / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(directory))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    directory = _directory(path)
    if not directory.is_dir():
        raise InputError(f"{path}: output directory {directory} does not exist")
    try:
        fd, tmp = create_temp(path)
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


def make_output_dir(path: str | os.PathLike) -> bool:
    """Create an output folder (and its parents); True if it was created here. A folder where
    no file can be created is refused, and removed again when this call created it."""
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{path}: cannot create the output directory ({e.strerror})") from None
    try:
        check_can_create(path / "probe")
    except InputError:
        if created:
            path.rmdir()
        raise
    return created


def check_can_create(path: str | os.PathLike) -> None:
    """Fail before any compute if a file cannot be created at ``path``.

    The test is the real thing: a temporary file is created beside it and removed.
    Permission bits alone say nothing to root, and /proc, /sys or a read-only mount refuse
    files whatever the bits say.
    """
    path = Path(path)
    directory = _directory(path)
    if not directory.is_dir():
        raise InputError(f"{path}: output directory {directory} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    try:
        fd, tmp = create_temp(path, suffix=".probe")
    except OSError as e:
        raise InputError(f"{path}: output directory {directory} is not writable "
                         f"(creating a file there fails: {e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_writable(path: str | os.PathLike) -> None:
    """Fail before any compute if the output image (or .npz/.npy) cannot be created or encoded."""
    path = Path(path)
    if path.suffix and not cv2.haveImageWriter(str(path)) and path.suffix.lower() not in (".npz", ".npy"):
        if not path.is_dir():
            raise InputError(f"{path}: no image encoder for '{path.suffix}'")
    check_can_create(path)
