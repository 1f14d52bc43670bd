"""Image files in and out (OpenCV), with RGB channel order; outputs are written atomically
(engine.atomic) and checked before any compute."""
from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine.atomic import create_temp, directory_of, write_bytes_atomic
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


class ImageFiles(Sequence):
    """Image files as a stack source read on access: each iteration decodes them again (two files
    ahead on threads, engine.prefetch), so a stack aligned to a middle frame, read twice, holds a
    few frames at a time, never all. ``on_read`` is called after each file is read by iteration."""

    def __init__(self, paths: Sequence[str | os.PathLike], on_read=None):
        self.paths, self.on_read = list(paths), on_read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ImageFiles(self.paths[i], self.on_read)
        return read_image(self.paths[i])

    def __iter__(self) -> Iterator[np.ndarray]:
        from engine.prefetch import prefetch
        for img in prefetch(read_image, self.paths):
            if self.on_read:
                self.on_read()
            yield img


def _png_meta(head: bytes):
    width, height, depth, ctype = struct.unpack_from(">IIBB", head, 16)
    return height, width, ctype != 0, depth == 16   # gray (+tRNS) stays gray; palette and alpha become RGB


def _jpeg_meta(head: bytes):
    pos = 2
    while pos + 9 < len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", head, pos + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):   # a start of frame
            bits, height, width, comps = struct.unpack_from(">BHHB", head, pos + 4)
            return (height, width, comps == 3, False) if bits == 8 and comps in (1, 3) else None
        pos += 2 + length
    return None


def _tiff_meta(head: bytes):
    order = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", head, 4)
    if ifd + 2 > len(head):
        return None
    (count,) = struct.unpack_from(order + "H", head, ifd)
    tags = {}
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(head):
            return None
        tag, kind, n = struct.unpack_from(order + "HHI", head, at)
        if n == 1 and kind in (3, 4):   # one SHORT or LONG, held in the entry itself
            tags[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), head, at + 8)[0]
        elif tag == 258 and kind == 3 and n in (3, 4):   # BitsPerSample of 3 or 4 samples: their offset
            off = struct.unpack_from(order + "I", head, at + 8)[0]
            bits = struct.unpack_from(f"{order}{n}H", head, off) if off + 2 * n <= len(head) else (0,)
            tags[tag] = bits[0] if len(set(bits)) == 1 else 0
    samples, bits, photometric = tags.get(277, 1), tags.get(258, 1), tags.get(262)
    if 256 not in tags or 257 not in tags or bits not in (8, 16) or photometric not in (0, 1, 2) \
            or samples not in (1, 3, 4) or (samples > 1) != (photometric == 2):
        return None
    return tags[257], tags[256], samples > 1, bits == 16   # an alpha channel is dropped


def _bmp_meta(head: bytes):
    width, height, _, bpp = struct.unpack_from("<iiHH", head, 18)
    return (abs(height), width, True, False) if bpp in (24, 32) else None


_HEADERS = ((PNG_SIGNATURE, _png_meta), (b"\xff\xd8", _jpeg_meta), (b"II*\0", _tiff_meta), (b"MM\0*", _tiff_meta),
            (b"BM", _bmp_meta))
HEADER_BYTES = 1 << 16


def image_meta(path: str | os.PathLike) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of the array read_image would return, from the file's header when it is a
    PNG, JPEG, TIFF or BMP that states it plainly (no pixel is decoded), else by decoding it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    for magic, parse in _HEADERS:
        if head.startswith(magic):
            try:
                meta = parse(head)
            except struct.error:
                meta = None
            if meta is not None and min(meta[:2]) > 0:
                height, width, rgb, wide = meta
                return (height, width, 3) if rgb else (height, width), np.dtype(np.uint16 if wide else np.uint8)
            break
    img = read_image(path)
    return img.shape, img.dtype


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
    directory = directory_of(path)
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
