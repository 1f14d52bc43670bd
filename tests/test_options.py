"""A Fuser's options (engine.options): checked once, when it is built; an option that does not
apply to the backend is refused, naming it and the backends it applies to; cheap checks
(checkpoint, outputs, the frame size in a file's header) come before any pixel is decoded."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from engine import Fuser, InputError
from engine.cli import main
from engine.imageio import image_meta, read_image

# (the options given, the option the message names, the backends it must list)
INAPPLICABLE = [
    (dict(backend="onnxruntime", precision="fp16"), "--precision fp16", "torch-cuda"),
    (dict(backend="openvino", precision="fp16"), "--precision fp16", "torch-cuda"),
    (dict(backend="tensorrt", engine="e.plan", precision="fp16"), "--precision fp16", "torch-cuda"),
    (dict(backend="torch-cuda", threads=2), "--threads 2", "openvino, onnxruntime"),
    (dict(backend="tensorrt", engine="e.plan", threads=2), "--threads 2", "openvino, onnxruntime"),
    (dict(backend="openvino", engine="e.plan"), "--engine e.plan", "tensorrt"),
    (dict(backend="torch-cuda", onnx="m.onnx"), "--onnx m.onnx", "openvino, onnxruntime"),
    (dict(backend="onnxruntime", device=1), "--device 1", "torch-cuda, tensorrt"),
]


@pytest.mark.parametrize("kwargs, option, backends", INAPPLICABLE, ids=lambda v: str(v)[:40])
def test_an_option_that_does_not_apply_is_refused(kwargs, option, backends, data_dir, tmp_path, capsys):
    pair = [str(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2)]
    argv = [a for k, v in kwargs.items() for a in (f"--{k}", str(v))]
    assert main([*pair, "-o", str(tmp_path / "o.png"), *argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gacn-fuse: error: {option} does not apply"), err
    assert f"applies to {backends}" in err, err
    assert not (tmp_path / "o.png").exists()
    kwargs = dict(kwargs)
    backend = kwargs.pop("backend")
    name = option.split()[0][2:]
    with pytest.raises(InputError, match=rf"^{name}=.* does not apply to the {backend} backend.*{backends}"):
        Fuser(backend, **kwargs)


def test_the_precisions_a_backend_runs_are_accepted(weights):
    from engine.options import PRECISIONS, backend_options
    for backend, precisions in PRECISIONS.items():
        for p in precisions:
            assert backend_options(backend, precision=p).precision == p
    Fuser("onnxruntime", weights=weights, precision="fp32").close()   # the default, said explicitly


def test_tensorrt_runner_takes_no_stray_options():
    from engine.backends.base import create_runner
    from engine.backends.tensorrt import TensorRTRunner
    with pytest.raises(TypeError):
        TensorRTRunner("e.plan", threads=2)
    with pytest.raises(InputError, match="threads=2 does not apply to the tensorrt backend"):
        create_runner("tensorrt", engine="e.plan", threads=2)


def test_bad_values_are_refused_once_when_the_fuser_is_built(weights):
    for kwargs, text in ((dict(threads=0), "threads=0"), (dict(max_memory="lots"), "cannot read 'lots'"),
                         (dict(tile=12), "--tile 12")):
        with pytest.raises(InputError, match=text):
            Fuser("onnxruntime", weights=weights, **kwargs)
    with pytest.raises(InputError, match="device=-1"):
        Fuser("torch-cuda", weights=weights, device=-1)
    with pytest.raises(InputError, match="either weights= .* or onnx="):
        Fuser("onnxruntime", weights=weights, onnx="m.onnx")


def test_the_model_loads_on_first_use(weights, data_dir):
    with Fuser("onnxruntime", weights=weights) as f:
        assert f._pipeline is None            # options and checkpoint checked; nothing compiled yet
        a, b = (read_image(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2))
        f.fuse(a, b)
        assert f._pipeline is not None
    assert f._pipeline is None


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp", ".pgm", ".webp"])
def test_image_meta_is_what_read_image_returns(ext, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    cases = []
    for shape in ((37, 51), (37, 51, 3), (37, 51, 4)):
        for dtype in (np.uint8, np.uint16):
            path = tmp_path / f"x{len(shape)}{shape[-1]}{np.dtype(dtype).name}{ext}"
            if cv2.imwrite(str(path), rng.integers(0, 200, shape).astype(dtype)):
                img = read_image(path)
                cases.append((path, (img.shape, img.dtype)))
    assert cases
    if ext in (".png", ".jpg", ".tif", ".bmp"):     # read from the header: no pixel decoded
        monkeypatch.setattr(cv2, "imdecode", _no_decoding)
        monkeypatch.setattr(cv2, "imread", _no_decoding)
    for path, meta in cases:
        if ext == ".bmp" and meta[0][-1] != 3:
            continue                                # an 8-bit BMP's palette may be gray or colour: decoded
        assert image_meta(path) == meta, path


def _no_decoding(*_args, **_kw):
    raise AssertionError("an image was decoded")


def zeros_png(path, width: int, height: int, rows_per_block: int = 64) -> None:
    """An RGB PNG of zeros, written without holding the image: one deflate block of
    ``rows_per_block`` rows, flushed so that it can be repeated, then the rest."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = bytes(1 + 3 * width)                       # filter byte 0, then the row's zeros
    c = zlib.compressobj(9)
    first = c.compress(row * rows_per_block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(row * rows_per_block) + c.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == again                        # the block after the 2-byte zlib header repeats
    n, rest = divmod(height, rows_per_block)
    tail = c.compress(row * rest) + c.flush(zlib.Z_FINISH)
    adler = ((len(row) * height) % 65521) << 16 | 1  # adler32 of that many zero bytes
    stream = first + again * (n - 1) + tail[:-4] + struct.pack(">I", adler)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", stream) + chunk(b"IEND", b""))


def test_zeros_png_is_a_valid_png(tmp_path):
    path = tmp_path / "z.png"
    zeros_png(path, 300, 1000, rows_per_block=64)
    img = read_image(path)
    assert img.shape == (1000, 300, 3) and not img.any()


@pytest.fixture(scope="module")
def huge_pair(tmp_path_factory):
    """Two 30000 x 30000 RGB PNGs of zeros (2.6 MB each, 2.7 GB each decoded)."""
    folder = tmp_path_factory.mktemp("huge")
    paths = [folder / "a.png", folder / "b.png"]
    for p in paths:
        zeros_png(p, 30000, 30000)
    return paths


def test_a_pair_the_budget_cannot_hold_is_refused_before_decoding(huge_pair, weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", _no_decoding)
    monkeypatch.setattr(cv2, "imread", _no_decoding)
    assert main([*map(str, huge_pair), "-o", str(tmp_path / "o.png"), "--weights", str(weights), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "30000x30000" in err and "2.00 GiB" in err, err
    assert "full-size planes alone take" in err, err


def test_offline_without_weights_the_checkpoint_comes_first(huge_pair, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", _no_decoding)
    monkeypatch.setattr(cv2, "imread", _no_decoding)
    monkeypatch.delenv("GACN_WEIGHTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GACN_WEIGHTS_URL", "http://127.0.0.1:9/GACN.pkl")
    assert main([*map(str, huge_pair), "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no --weights given" in err, err
