"""gacn-fuse --stream: two synchronised videos or image sequences fused frame by frame."""
from __future__ import annotations

import glob
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputError
from engine.imageio import read_image, write_image

log = logging.getLogger("gacn-fuse")
VIDEO_EXTS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class FrameSource:
    """Frames of one source in order: a video (OpenCV VideoCapture), a directory or a glob of images."""

    def __init__(self, spec: str):
        self.spec = spec
        p = Path(spec)
        if p.is_dir():
            self.files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        elif any(ch in spec for ch in "*?["):
            self.files = [Path(f) for f in sorted(glob.glob(spec))]
        elif p.is_file():
            self.files = None
            self.cap = cv2.VideoCapture(str(p))
            if not self.cap.isOpened():
                raise InputError(f"{spec}: not a readable video")
            self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            return
        else:
            raise InputError(f"{spec}: no such video, directory or matching files")
        if not self.files:
            raise InputError(f"{spec}: no image files")
        self.fps, self.count = 25.0, len(self.files)

    def __iter__(self):
        """Decoded RGB frames; a frame that cannot be decoded yields its InputError instead."""
        if self.files is not None:
            for f in self.files:
                try:
                    yield read_image(f)
                except InputError as e:
                    yield e
            return
        while True:
            ok, frame = self.cap.read()
            if not ok:
                return
            yield np.ascontiguousarray(frame[:, :, ::-1]) if frame.ndim == 3 else frame


def _pairs(a: FrameSource, b: FrameSource, ended: list):
    ia, ib = iter(a), iter(b)
    while True:
        fa, fb = next(ia, None), next(ib, None)
        if fa is None or fb is None:
            if (fa is None) != (fb is None):
                ended.append(f"{(b if fa is None else a).spec} has more frames than {(a if fa is None else b).spec}; "
                             "the extra frames were not fused")
            return
        yield next((x for x in (fa, fb) if isinstance(x, Exception)), (fa, fb))


class _Sink:
    """Fused frames to a video (written under a temporary name, renamed when complete) or a directory."""

    def __init__(self, out: str, fps: float):
        self.out = Path(out)
        self.fourcc = VIDEO_EXTS.get(self.out.suffix.lower())
        self.fps, self.writer, self.tmp = fps, None, None
        if self.fourcc is None:
            self.out.mkdir(parents=True, exist_ok=True)
        elif not self.out.parent.is_dir():
            raise InputError(f"{out}: output directory {self.out.parent} does not exist")

    def write(self, index: int, frame: np.ndarray) -> None:
        if self.fourcc is None:
            write_image(self.out / f"{index:06d}.png", frame)
            return
        if frame.dtype != np.uint8:
            raise InputError("video output needs 8-bit frames; write 16-bit frames to a directory instead")
        if self.writer is None:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.out.stem}.", suffix=self.out.suffix, dir=self.out.parent)
            os.close(fd)
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h), frame.ndim == 3)
        self.writer.write(frame[:, :, ::-1] if frame.ndim == 3 else frame)

    def close(self, keep: bool) -> None:
        if self.writer is not None:
            self.writer.release()
            if keep:
                os.replace(self.tmp, self.out)
            else:
                os.unlink(self.tmp)


def run_stream(args) -> int:
    from tqdm import tqdm
    from engine.cli import _make_fuser
    from engine.prefetch import background
    a, b = (FrameSource(s) for s in args.stream)
    sink = _Sink(args.output, a.fps)
    failed, ended, written = [], [], 0
    ok = False
    try:
        with _make_fuser(args) as fuser, tqdm(total=a.count, desc="stream", unit="frame", disable=args.quiet,
                                              leave=False, file=sys.stderr) as bar:
            pairs = background(_pairs(a, b, ended), depth=2 * args.slots)
            for res in fuser.stream(pairs, slots=args.slots):
                if res.ok:
                    sink.write(res.index, res.fused)
                    written += 1
                else:
                    failed.append(f"frame {res.index}: {res.error}")
                bar.update()
        ok = True
    finally:
        sink.close(keep=ok and written > 0)
    for msg in failed + ended:
        print(f"gacn-fuse: error: {msg}", file=sys.stderr)
    log.info("%d frames fused into %s, %d failed", written, args.output, len(failed))
    return 2 if failed or ended or not written else 0
