"""No checkpoint can run code: hostile pickles in every slot of both torch formats, and a fuzz
of the real checkpoint (random bytes, truncations, bit flips) that only ever gives a
CheckpointError or a state dict.

"Ran code" is detected twice: the payloads write a marker file (os.system, builtins.exec and
friends), and an audit hook records every process spawn or compile of source text made while
a checkpoint is parsed.
"""
import io
import os
import pickle
import pickletools
import random
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from engine.checkpoint import LEGACY_MAGIC, load_gacn, parse_checkpoint
from engine.errors import CheckpointError

# -- detection -------------------------------------------------------------------------------------
_WATCHED = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen", "compile")
_events: list = []
_watching = [False]


def _audit(event, args):
    if _watching[0] and event in _WATCHED:
        _events.append(event)


sys.addaudithook(_audit)


class watch:
    """Records the watched audit events raised inside the block."""

    def __enter__(self):
        _events.clear()
        _watching[0] = True
        return _events

    def __exit__(self, *exc):
        _watching[0] = False


# -- payloads ----------------------------------------------------------------------------------------
class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker):
    """Pickles that write ``marker`` when unpickled without restriction, in several encodings."""
    sh = f"touch '{marker}'"
    py = f"open({str(marker)!r}, 'w').write('ran')"
    out = {
        "os.system": pickle.dumps(_Reduce(os.system, sh), protocol=2),
        "builtins.exec": pickle.dumps(_Reduce(exec, py), protocol=4),  # STACK_GLOBAL
        "builtins.eval": pickle.dumps(_Reduce(eval, py), protocol=0),  # text GLOBAL
        "subprocess.call": pickle.dumps(_Reduce(subprocess.call, ["touch", str(marker)]), protocol=3),
        # INST: the class is looked up and called in one opcode
        "inst": f"(S'{sh}'\nios\nsystem\n.".encode(),
    }
    return out


def _pickle_ends(data: bytes, count: int) -> list[int]:
    """Offsets where each of the first ``count`` pickles of a stream ends (read, never run)."""
    f, ends = io.BytesIO(data), []
    for _ in range(count):
        for _op in pickletools.genops(f):
            pass
        ends.append(f.tell())
    return ends


@pytest.fixture(scope="module")
def legacy_parts(data_dir):
    """The official checkpoint cut into its five pickles and the raw storage data."""
    data = (data_dir / "GACN.pkl").read_bytes()
    ends = _pickle_ends(data, 5)
    starts = [0] + ends[:-1]
    parts = [data[s:e] for s, e in zip(starts, ends)]
    return parts, data[ends[-1]:]


def _zip_checkpoint(data_pkl: bytes, storages: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", b"little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", b"3\n")
    return buf.getvalue()


@pytest.fixture(scope="module")
def zip_bytes(legacy_parts):
    """The official checkpoint re-packed in torch's zip format (no torch needed): the state-dict
    pickle and each storage's raw bytes."""
    from engine.checkpoint import _unpickle
    parts, raw = legacy_parts
    declared = {}
    _unpickle(io.BytesIO(parts[3]), declared)  # records only: no code, no data
    storages, f = {}, io.BytesIO(raw)
    for key in _unpickle(io.BytesIO(parts[4])):
        numel = int.from_bytes(f.read(8), "little")
        storages[key] = f.read(numel * declared[key].dtype.itemsize)
    return parts, storages


def _hostile_files(legacy_parts, marker):
    """name -> bytes: each payload in each slot of the legacy stream and of the zip archive."""
    parts, raw = legacy_parts
    files = {}
    for pname, evil in payloads(marker).items():
        files[f"bare/{pname}"] = evil
        for slot, label in enumerate(("magic", "protocol", "sys_info", "state_dict", "storage_keys")):
            p = list(parts)
            p[slot] = evil
            files[f"legacy-{label}/{pname}"] = b"".join(p) + raw
        nested = pickle.dumps({"decision_path_conv4.weight": _Reduce(exec, "0"), "x": _Reduce(os.system, "true")})
        files[f"legacy-nested/{pname}"] = b"".join(parts[:3]) + nested + b"".join(parts[4:]) + raw
        files[f"zip-data.pkl/{pname}"] = _zip_checkpoint(evil, {})
        files[f"zip-nested/{pname}"] = _zip_checkpoint(pickle.dumps({"w": _Reduce(os.system, f"touch '{marker}'")}), {})
    # the payload inside a persistent id (the storage record) of either format
    persistent = _persistent_id_payload(marker)
    files["legacy-persistent-id"] = b"".join(parts[:3]) + persistent + b"".join(parts[4:]) + raw
    files["zip-persistent-id"] = _zip_checkpoint(persistent, {})
    return files


def _persistent_id_payload(marker) -> bytes:
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if obj == "storage-ref":
                return ("storage", _Reduce(os.system, f"touch '{marker}'"), "0", "cpu", 1)
            return None
    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": "storage-ref"})
    return buf.getvalue()


def test_payloads_do_run_code_without_the_restriction(tmp_path):
    """Self-check: the payloads are real (plain pickle.loads runs them); else the tests prove nothing."""
    for name, evil in payloads(tmp_path / "m").items():
        marker = tmp_path / f"ran-{name.replace('.', '_')}"
        evil = payloads(marker)[name]
        with watch() as events:
            pickle.loads(evil)  # noqa: S301 - deliberately unrestricted, on our own payload
        assert marker.exists() and events, name


def test_hostile_checkpoints_never_run_code(legacy_parts, tmp_path):
    marker = tmp_path / "pwned"
    files = _hostile_files(legacy_parts, marker)
    assert len(files) > 40
    for name, data in files.items():
        path = tmp_path / "evil.pkl"
        path.write_bytes(data)
        with watch() as events, pytest.raises(CheckpointError) as e:
            load_gacn(path)
        assert not marker.exists() and not events, f"{name}: code ran ({events})"
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value), (name, str(e.value))


def test_hostile_slot_names_the_refused_callable(legacy_parts, tmp_path):
    parts, raw = legacy_parts
    for slot in range(5):
        p = list(parts)
        p[slot] = payloads(tmp_path / "m")["os.system"]
        with pytest.raises(CheckpointError, match=r"pickles '(posix|os)\.system'.*not loaded"):
            parse_checkpoint(b"".join(p) + raw)


def test_cli_api_env_and_export_refuse_hostile_checkpoints(legacy_parts, tmp_path, data_dir, capsys, monkeypatch):
    """Every way a checkpoint comes in: --weights, $GACN_WEIGHTS, Fuser(weights=), export_onnx --weights."""
    from engine import Fuser
    from engine.cli import main
    sys.path.insert(0, str(REPO))
    from engine.export import export_onnx
    marker = tmp_path / "pwned"
    pair = [str(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2)]
    files = _hostile_files(legacy_parts, marker)
    for name in ("bare/os.system", "legacy-protocol/builtins.exec", "legacy-sys_info/inst",
                 "legacy-storage_keys/subprocess.call", "legacy-state_dict/builtins.eval", "zip-data.pkl/os.system"):
        w = tmp_path / "w.pkl"
        w.write_bytes(files[name])
        out = tmp_path / "o.png"
        assert main([*pair, "-o", str(out), "--weights", str(w)]) == 2, name
        monkeypatch.setenv("GACN_WEIGHTS", str(w))
        assert main([*pair, "-o", str(out), "-q"]) == 2, name
        monkeypatch.delenv("GACN_WEIGHTS")
        assert export_onnx.main(["--weights", str(w), "-o", str(tmp_path / "m.onnx")]) == 2, name
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 3 and all(str(w) in ln for ln in err), (name, err)
        assert err[0].startswith("gacn-fuse: error: ") and err[2].startswith("export_onnx: error: "), err
        with pytest.raises(CheckpointError):
            Fuser("onnxruntime", weights=w)
        assert not marker.exists() and not out.exists(), name


def test_every_hostile_checkpoint_through_the_cli_exit_2_one_message(legacy_parts, tmp_path, data_dir, capsys):
    from engine.cli import main
    marker = tmp_path / "pwned"
    pair = [str(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2)]
    w = tmp_path / "w.pkl"
    for name, data in _hostile_files(legacy_parts, marker).items():
        w.write_bytes(data)
        rc = main([*pair, "-o", str(tmp_path / "o.png"), "--weights", str(w)])  # (the CLI itself spawns
        err = capsys.readouterr().err.strip().splitlines()                       # ldconfig: marker only)
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"gacn-fuse: error: {w}: "), (name, err)
        assert not marker.exists() and not (tmp_path / "o.png").exists(), name


def test_console_hostile_checkpoint_exit_2_one_line(legacy_parts, tmp_path, data_dir):
    marker = tmp_path / "pwned"
    w = tmp_path / "w.pkl"
    w.write_bytes(_hostile_files(legacy_parts, marker)["legacy-protocol/os.system"])
    pair = [str(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2)]
    r = subprocess.run([sys.executable, "-m", "engine.cli", *pair, "-o", str(tmp_path / "o.png"), "--weights", str(w)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "gacn-fuse: error:" in r.stderr, r.stderr
    assert not marker.exists()


# -- fuzz ------------------------------------------------------------------------------------------
def _outcome(data: bytes):
    try:
        return "ok" if parse_checkpoint(data) is not None else "?"
    except CheckpointError:
        return "refused"


def _flip(data: bytes, rng: random.Random, limit: int) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(min(limit, len(b)))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def test_fuzz_never_raises_anything_else_nor_runs_code(legacy_parts, zip_bytes):
    parts, raw = legacy_parts
    legacy = b"".join(parts) + raw
    header = len(b"".join(parts))  # flips inside the pickles reach the parser, not the float data
    zparts, zstorages = zip_bytes
    zdata = _zip_checkpoint(zparts[3], zstorages)
    assert _outcome(legacy) == "ok" and _outcome(zdata) == "ok"
    rng = random.Random(20261127)
    cases = []
    magic = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    for _ in range(150):
        junk = rng.randbytes(rng.randrange(0, 600))
        cases += [junk, magic + junk, b"PK\x03\x04" + junk, magic + parts[2] + junk]
    cases += [legacy[:n] for n in sorted(rng.sample(range(len(legacy)), 150))]
    cases += [legacy[:n] for n in range(0, header + 1, 29)]
    cases += [zdata[:n] for n in sorted(rng.sample(range(len(zdata)), 60))]
    cases += [_flip(legacy, rng, header) for _ in range(700)]
    cases += [_flip(legacy, rng, len(legacy)) for _ in range(60)]
    zpkl_end = zdata.index(zparts[3]) + len(zparts[3])
    cases += [_flip(zdata, rng, zpkl_end) for _ in range(250)]
    cases += [zdata[: len(zdata) - 22] + _flip(zdata[-22:], rng, 22) for _ in range(60)]  # the central directory
    seen = {"ok": 0, "refused": 0}
    with watch() as events:
        for data in cases:
            seen[_outcome(data)] += 1  # any other exception fails the test with its traceback
    assert not events, events
    assert seen["refused"] > len(cases) // 2, seen


@pytest.mark.parametrize("size, stride", [((2, 2), (3, 1)), ((5,), (1,)), ((2 ** 40, 2 ** 40), (0, 0)),
                                          ((2 ** 62, 4), (1, 1)), ((2, -1), (1, 1))])
def test_tensor_records_outside_their_storage_are_refused(legacy_parts, size, stride):
    """A record whose size/stride reach past its storage's data is refused, never read out of bounds."""
    parts, _ = legacy_parts

    def frag(obj):  # the opcodes that push obj (no PROTO, no STOP)
        return pickle.dumps(obj, protocol=2)[2:-1]

    record = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + frag("storage") + b"ctorch\nFloatStorage\n" + frag("0")
              + frag("cpu") + frag(4) + b"NtQ" + frag(0) + frag(size) + frag(stride) + b"\x89NtR")
    state_dict = b"\x80\x02}" + frag("w") + record + b"s."
    data = (b"".join(parts[:3]) + state_dict + pickle.dumps(["0"], protocol=2)
            + (4).to_bytes(8, "little") + bytes(16))
    with pytest.raises(CheckpointError, match="reaches outside its storage|negative"):
        parse_checkpoint(data)
    good = data.replace(frag(size) + frag(stride), frag((2, 2)) + frag((2, 1)))
    assert parse_checkpoint(good)["w"].shape == (2, 2)  # the same record, in bounds, loads
