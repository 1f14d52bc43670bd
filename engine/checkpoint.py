"""Read GACN checkpoints without PyTorch.

The runtime must build its graph from the official ``GACN.pkl`` on machines that have no
torch, so this module understands both torch serialisation formats (the legacy pickle
stream the official file uses and the zip archive of ``torch.save`` since 1.6) through a
restricted unpickler: only ``OrderedDict``, tensor rebuilds and storage types resolve, so
a hostile pickle cannot run code. Every tensor comes back as a numpy array.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from engine.errors import CheckpointError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# The architecture: block name -> (in channels, out channels) of its 3x3 conv.
CONV_BLOCKS = {
    "feature_extraction_conv0": (1, 16), "feature_extraction_conv1": (16, 16),
    "feature_extraction_conv2": (32, 16), "feature_extraction_conv3": (48, 16),
    "decision_path_conv1": (64, 48), "decision_path_conv2": (48, 32),
    "decision_path_conv3": (32, 16), "decision_path_conv4": (16, 1),
}
SSE_CHANNELS = {4: 64, 5: 48, 6: 32, 7: 16, 8: 1}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of a GACN state dict and its shape (spec section 0)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for blk, (cin, cout) in CONV_BLOCKS.items():
        shapes[f"{blk}.{blk}_Conv2d.weight"] = (cout, cin, 3, 3)
        shapes[f"{blk}.{blk}_Conv2d.bias"] = (cout,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{blk}.{blk}_BatchNorm.{p}"] = (cout,)
        shapes[f"{blk}.{blk}_BatchNorm.num_batches_tracked"] = ()
    for i in range(4):
        shapes[f"se_{i}.fc.0.weight"] = (2, 16)
        shapes[f"se_{i}.fc.2.weight"] = (16, 2)
    for i, c in SSE_CHANNELS.items():
        shapes[f"se_{i}.fc.0.weight"] = (1, c, 7, 7)
    return shapes


class _Storage:
    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.array: np.ndarray | None = None


def _rebuild_tensor(storage: _Storage, offset, size, stride, *_):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage]):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise CheckpointError(f"checkpoint pickles '{module}.{name}', which a GACN state dict never contains")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"checkpoint holds an unsupported persistent object {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("checkpoint uses storage views, which GACN checkpoints do not")
        if isinstance(storage_type, type) or isinstance(storage_type, np.dtype):
            dtype = storage_type
        else:
            raise CheckpointError(f"unsupported storage type {storage_type!r}")
        return self.storages.setdefault(str(key), _Storage(dtype, str(key), int(numel)))


def _materialise(obj) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    out = {}
    for name, value in obj.items():
        if not (isinstance(value, tuple) and value and value[0] == "tensor"):
            raise CheckpointError(f"checkpoint entry '{name}' is not a tensor")
        _, storage, offset, size, stride = value
        item = storage.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            storage.array[offset:], shape=size, strides=tuple(s * item for s in stride))
        out[str(name)] = np.array(arr)  # own the memory, contiguous
    return out


def _load_legacy(f) -> dict[str, np.ndarray]:
    if pickle.load(f) != LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # sys info
    storages: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(f, storages).load()
    for key in pickle.load(f):
        st = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        data = f.read(numel * st.dtype.itemsize)
        if numel != st.numel or len(data) != numel * st.dtype.itemsize:
            raise CheckpointError("checkpoint is truncated")
        st.array = np.frombuffer(data, dtype=st.dtype.newbyteorder("<"))
    return _materialise(result)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointError("zip archive has no data.pkl: not a torch checkpoint")
        root = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(io.BytesIO(zf.read(pkl)), storages).load()
        for key, st in storages.items():
            data = zf.read(f"{root}data/{key}")
            st.array = np.frombuffer(data, dtype=st.dtype.newbyteorder("<"))[: st.numel]
    return _materialise(result)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a torch checkpoint as numpy arrays, keyed as saved."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(f)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


def validate_gacn(state: dict[str, np.ndarray], source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Strictly check key names and shapes; return float32 copies of the parameters."""
    shapes = expected_shapes()
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    if missing or unexpected:
        lines = [f"{source} is not a GACN state dict:"]
        if missing:
            lines.append(f"  missing {len(missing)} keys: " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)} keys: " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
        raise CheckpointError("\n".join(lines))
    bad = [f"{k}: {tuple(state[k].shape)} (expected {s})" for k, s in shapes.items() if tuple(state[k].shape) != s]
    if bad:
        raise CheckpointError(f"{source} has GACN key names but wrong shapes:\n  " + "\n  ".join(bad))
    params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    nonfinite = [k for k, v in params.items() if not np.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f"{source} has non-finite values in: {', '.join(nonfinite)}")
    return params


def load_gacn(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a GACN checkpoint: float32 numpy parameters by their official names."""
    return validate_gacn(read_state_dict(path), source=str(path))


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
