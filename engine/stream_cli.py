"""gacn-fuse --stream: two synchronised videos or image sequences fused frame by frame."""
from __future__ import annotations

import glob
import logging
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from engine.atomic import create_temp
from engine.errors import GacnError, InputError, WriteError
from engine.imageio import check_can_create, make_output_dir, read_image, write_image

log = logging.getLogger(__name__)
VIDEO_EXTS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def natural_key(path: Path) -> tuple:
    """Sort key comparing the numbers in a name as numbers: frame2 < frame10 (a string sort puts
    frame10 first). Text parts compare as text, so names without numbers sort as usual; the
    name itself breaks ties (f1 and f01)."""
    parts = re.split(r"(\d+)", path.name)
    return [int(t) if i % 2 else t for i, t in enumerate(parts)], path.name


class FrameSource:
    """Frames of one source in order: a video (OpenCV VideoCapture), a directory or a glob of
    images; files in natural order (numbers in names compared as numbers, see natural_key)."""

    def __init__(self, spec: str):
        self.spec = spec
        p = Path(spec)
        if p.is_dir():
            self.files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS), key=natural_key)
        elif any(ch in spec for ch in "*?["):
            self.files = sorted((Path(f) for f in glob.glob(spec)), key=natural_key)
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
        shown = ", ".join(f.name for f in self.files[:3]) + (f", ..., {self.files[-1].name}" if self.count > 3 else "")
        log.info("%s: %d frames in natural order (numbers in names compared as numbers): %s", spec, self.count, shown)

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
    """Fused frames to a video (written under a temporary name, renamed when complete) or a directory.

    A video keeps its timing: a frame that failed is replaced by the previous fused frame (by
    a black frame while none has been fused yet) and reported; a directory just lacks its file.
    """

    def __init__(self, out: str, fps: float):
        self.out = Path(out)
        self.fourcc = VIDEO_EXTS.get(self.out.suffix.lower())
        self.fps, self.writer, self.tmp = fps, None, None
        self.last: np.ndarray | None = None
        self.pending_black = 0  # failed frames before the first fused one (size unknown until then)
        self.created_dir = False
        if self.fourcc is None:
            self.created_dir = make_output_dir(self.out)
        else:
            check_can_create(self.out)

    @property
    def is_video(self) -> bool:
        return self.fourcc is not None

    def write(self, index: int, frame: np.ndarray) -> None:
        if self.fourcc is None:
            write_image(self.out / f"{index:06d}.png", frame)
            return
        if frame.dtype != np.uint8:
            raise InputError("video output needs 8-bit frames; write 16-bit frames to a directory instead")
        if self.writer is None:
            fd, self.tmp = create_temp(self.out, suffix=self.out.suffix)
            os.close(fd)
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h), frame.ndim == 3)
            if not self.writer.isOpened():   # no encoder here: every frame would be dropped; stop the stream
                raise GacnError(f"{self.out}: OpenCV cannot write '{self.out.suffix}' video here (codec "
                                f"{self.fourcc!r} unavailable); write to a directory of images instead")
            for _ in range(self.pending_black):
                self._put(np.zeros_like(frame))
            self.pending_black = 0
        self._put(frame)
        self.last = frame

    def fill(self) -> str:
        """A video frame in place of one that failed; says what was written."""
        if self.last is None:
            self.pending_black += 1
            return "written as a black frame to keep the video's timing"
        self._put(self.last)
        return "written as a repeat of the previous frame to keep the video's timing"

    def _put(self, frame: np.ndarray) -> None:
        self.writer.write(frame[:, :, ::-1] if frame.ndim == 3 else frame)

    def _remove_dir(self) -> None:
        if self.created_dir:
            try:
                self.out.rmdir()  # only if still empty
            except OSError:
                pass

    def close(self, keep: bool) -> None:
        if self.writer is not None:
            self.writer.release()
            if keep:
                os.replace(self.tmp, self.out)
            else:
                os.unlink(self.tmp)
        elif self.fourcc is None and not keep:
            self._remove_dir()


def run_stream(args, make_fuser) -> int:
    """``make_fuser(args)``: the CLI's Fuser factory (so this module needs nothing from engine.cli)."""
    from tqdm import tqdm
    from engine.prefetch import background
    a, b = (FrameSource(s) for s in args.stream)
    sink = _Sink(args.output, a.fps)
    failed, ended, written = [], [], 0
    ok = False
    total = min(a.count, b.count) if a.count and b.count else None
    try:
        with make_fuser(args) as fuser, tqdm(total=total, desc="stream", unit="frame", disable=args.quiet,
                                              leave=True, file=sys.stderr, dynamic_ncols=True) as bar:
            pairs = background(_pairs(a, b, ended), depth=2 * args.slots)
            for res in fuser.stream(pairs, slots=args.slots):
                if res.ok:
                    try:
                        sink.write(res.index, res.fused)
                        written += 1
                    except (InputError, WriteError) as e:
                        res.error = e
                if not res.ok:
                    note = f"; {sink.fill()}" if sink.is_video else ""
                    failed.append(f"frame {res.index}: {res.error}{note}")
                bar.update()
        ok = True
    finally:
        sink.close(keep=ok and written > 0)
    if not written and not failed:
        failed.append(f"{args.stream[0]} and {args.stream[1]}: no frames to fuse")
    for msg in failed + ended:
        print(f"gacn-fuse: error: {msg}", file=sys.stderr)
    log.info("%d frames fused into %s, %d failed", written, args.output, len(failed))
    return 2 if failed or ended or not written else 0
