"""Read GACN checkpoints without PyTorch.

The runtime must build its graph from the official ``GACN.pkl`` on machines that have no
torch, so this module understands both torch serialisation formats (the legacy pickle
stream the official file uses and the zip archive of ``torch.save`` since 1.6). Every pickle
in either format (the legacy magic number, protocol and system headers, the state dict, the
storage-key list; the zip's data.pkl) goes through one restricted unpickler: only
``OrderedDict``, the tensor rebuild and the storage types resolve, so a hostile file cannot
run code; tensor records are bounds-checked against their storage before any view is made,
so a corrupt file cannot read outside its data either. Every tensor comes back as a numpy array.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from engine.errors import CheckpointError
from engine.spec import CONV_BLOCKS, CSE_COUNT, SSE_CHANNELS, bn_key, conv_key, cse_keys, sse_key

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of a GACN state dict and its shape (spec section 0)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for blk, (cin, cout) in CONV_BLOCKS.items():
        shapes[conv_key(blk, "weight")] = (cout, cin, 3, 3)
        shapes[conv_key(blk, "bias")] = (cout,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[bn_key(blk, p)] = (cout,)
        shapes[bn_key(blk, "num_batches_tracked")] = ()
    for i in range(CSE_COUNT):
        fc1, fc2 = cse_keys(i)
        shapes[fc1], shapes[fc2] = (2, 16), (16, 2)
    for i, c in SSE_CHANNELS.items():
        shapes[sse_key(i)] = (1, c, 7, 7)
    return shapes


MAX_CHECKPOINT_BYTES = 64 << 20  # GACN's checkpoint is 0.3 MB; anything far larger is not GACN
_MAX_DIMS = 8


class _Storage:
    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.array: np.ndarray | None = None


class _TensorRef:
    """A tensor the pickle described; only :func:`_rebuild_tensor` makes one (never the pickle itself)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_DIMS or not all(type(v) is int for v in value):
        raise CheckpointError(f"tensor {what} is not a short tuple of integers")
    if any(v < 0 for v in value):
        raise CheckpointError(f"tensor {what} has a negative entry")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
        raise CheckpointError("tensor record does not reference a storage at a valid offset")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError("tensor size and stride differ in length")
    return _TensorRef(storage, offset, size, stride)


class _StorageType:
    """What a storage class name (``torch.FloatStorage``) resolves to: its dtype, and nothing callable."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


_STORAGE_TYPES = {name: _StorageType(dt) for name, dt in _STORAGE_DTYPES.items()}


class _RestrictedUnpickler(pickle._Unpickler):
    """The only unpickler of this module: every pickle of both formats (the legacy headers, the
    state dict, the storage-key list) goes through it.

    A pickle can name no callable beyond ``OrderedDict`` and the tensor rebuild (ours, which
    makes a plain record); storage class names resolve to inert dtype holders; BUILD applies
    to OrderedDicts only (torch pickles a state dict's ``_metadata`` that way). It is the
    pure-Python unpickler on purpose: the C one grows its memo table to any index a file names
    (one flipped byte in a LONG_BINPUT asks for 16 GB), the Python one keeps a dict.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, f, storages: dict[str, _Storage] | None):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        raise CheckpointError(f"checkpoint pickles '{str(module):.60}.{str(name):.60}', "
                              "which a GACN state dict never contains; it was not loaded")

    def load_build(self):
        if type(self.stack[-2]) is not collections.OrderedDict or not isinstance(self.stack[-1], dict):
            raise CheckpointError(f"checkpoint sets the state of a {type(self.stack[-2]).__name__}, "
                                  "which a GACN state dict never does")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def persistent_load(self, pid):
        if self.storages is None:
            raise CheckpointError("checkpoint header holds a persistent object, which torch never writes there")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"checkpoint holds an unsupported persistent object ({type(pid).__name__})")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("checkpoint uses storage views, which GACN checkpoints do not")
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("checkpoint storage has an unsupported type")
        if not isinstance(key, (str, int)) or type(numel) is not int or not 0 <= numel <= MAX_CHECKPOINT_BYTES:
            raise CheckpointError("checkpoint storage record is malformed")
        storage = self.storages.setdefault(str(key), _Storage(storage_type.dtype, str(key), numel))
        if storage.numel != numel or storage.dtype != storage_type.dtype:
            raise CheckpointError(f"checkpoint storage '{storage.key:.40}' is declared twice, differently")
        return storage


def _unpickle(f, storages: dict[str, _Storage] | None = None):
    """One pickle from ``f`` through the restricted unpickler (``storages`` collects the
    storages the state dict references; None where none may appear)."""
    return _RestrictedUnpickler(f, storages).load()


def _materialise(obj) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise CheckpointError(f"checkpoint has a {type(name).__name__} key, not a parameter name")
        if not isinstance(value, _TensorRef):
            raise CheckpointError(f"checkpoint entry '{name:.80}' is not a tensor")
        st = value.storage
        if st.array is None:
            raise CheckpointError(f"checkpoint has no data for storage '{st.key:.40}' (truncated?)")
        count = math.prod(value.size)  # Python ints: no overflow whatever the file says
        last = value.offset + sum((n - 1) * s for n, s in zip(value.size, value.stride)) if count else value.offset
        if count > st.array.size or (count and last >= st.array.size):
            raise CheckpointError(f"checkpoint entry '{name:.80}' reaches outside its storage")
        item = st.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            st.array[value.offset:], shape=value.size, strides=tuple(s * item for s in value.stride), writeable=False)
        out[name] = np.array(arr)  # own the memory, contiguous
    return out


def _load_legacy(f: io.BytesIO) -> dict[str, np.ndarray]:
    if _unpickle(f) != LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    if _unpickle(f) != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported torch checkpoint protocol version")
    sys_info = _unpickle(f)
    if not isinstance(sys_info, dict):
        raise CheckpointError("checkpoint system header is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise CheckpointError("checkpoint was written big-endian, which this reader does not support")
    storages: dict[str, _Storage] = {}
    result = _unpickle(f, storages)
    keys = _unpickle(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise CheckpointError("checkpoint storage-key list is malformed")
    if set(keys) != set(storages):
        raise CheckpointError("checkpoint storage-key list does not match its tensors")
    for key in keys:
        st = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("checkpoint is truncated")
        (numel,) = struct.unpack("<q", head)
        nbytes = st.numel * st.dtype.itemsize
        if numel != st.numel:
            raise CheckpointError(f"checkpoint storage '{key:.40}' has {numel} elements, its tensors say {st.numel}")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError("checkpoint is truncated")
        st.array = np.frombuffer(data, dtype=st.dtype.newbyteorder("<"))
    return _materialise(result)


def _load_zip(data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkl = next((n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointError("zip archive has no data.pkl: not a torch checkpoint")
        root = pkl[: -len("data.pkl")]

        def member(name: str) -> bytes:
            info = infos.get(name)
            if info is None:
                raise CheckpointError(f"zip checkpoint has no member {name:.80}")
            if info.file_size > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"zip member {name:.80} is too large for a GACN checkpoint")
            return zf.read(info)

        if f"{root}byteorder" in infos and member(f"{root}byteorder").strip() != b"little":
            raise CheckpointError("checkpoint was written big-endian, which this reader does not support")
        storages: dict[str, _Storage] = {}
        result = _unpickle(io.BytesIO(member(pkl)), storages)
        for key, st in storages.items():
            raw = member(f"{root}data/{key}")
            nbytes = st.numel * st.dtype.itemsize
            if len(raw) < nbytes:
                raise CheckpointError(f"checkpoint storage '{key:.40}' is truncated")
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"), count=st.numel)
    return _materialise(result)


def parse_checkpoint(data: bytes, name: str = "checkpoint") -> dict[str, np.ndarray]:
    """All tensors of the torch checkpoint in ``data`` as numpy arrays, keyed as saved.

    Whatever the bytes, the only exception is a CheckpointError starting with ``name``; nothing
    in them can run code.
    """
    try:
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{len(data)} bytes is too large for a GACN checkpoint (the official one has 288749)")
        if data[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(data)):
            return _load_zip(data)
        return _load_legacy(io.BytesIO(data))
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{name}: not a readable torch checkpoint (nested too deeply)") from None
    except Exception as e:  # noqa: BLE001 - whatever malformed bytes make the parsers raise
        raise CheckpointError(f"{name}: not a readable torch checkpoint ({type(e).__name__}: {str(e):.200})") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a torch checkpoint file as numpy arrays, keyed as saved (see parse_checkpoint).

    The file is read whole (bounded by MAX_CHECKPOINT_BYTES) and parsed from memory.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
        size = path.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path}: {size} bytes is too large for a GACN checkpoint (the official one has 288749)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    return parse_checkpoint(data, str(path))


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
