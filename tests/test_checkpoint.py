"""The torch-free checkpoint reader and the strict GACN validation."""
import pickle

import numpy as np
import pytest

from engine.errors import CheckpointError
from engine.checkpoint import expected_shapes, load_gacn, read_state_dict, sha256_of

OFFICIAL_SHA256 = "08c4c30ebb3fc9050ab9423e2d8c6c70a8c2e95141426f263814ed45727ac352"


def test_official_checkpoint_identity(weights):
    assert sha256_of(weights) == OFFICIAL_SHA256


def test_reader_matches_torch_load(weights):
    torch = pytest.importorskip("torch")
    ours = read_state_dict(weights)
    theirs = torch.load(weights, map_location="cpu", weights_only=True)
    assert set(ours) == set(theirs) == set(expected_shapes())
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)


def test_zip_format_round_trip(weights, tmp_path):
    torch = pytest.importorskip("torch")
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    torch.save(sd, tmp_path / "z.pt")
    ours = load_gacn(tmp_path / "z.pt")
    for k, v in ours.items():
        np.testing.assert_array_equal(v, sd[k].numpy())


def test_missing_and_unexpected_keys_are_named(weights, tmp_path):
    torch = pytest.importorskip("torch")
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    sd.pop("se_4.fc.0.weight")
    sd["head.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_gacn(tmp_path / "bad.pt")
    assert "not a GACN state dict" in str(e.value)
    assert "se_4.fc.0.weight" in str(e.value) and "head.weight" in str(e.value)


def test_wrong_shape_is_named(weights, tmp_path):
    torch = pytest.importorskip("torch")
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    sd["se_0.fc.0.weight"] = torch.zeros(4, 16)
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"se_0.fc.0.weight: \(4, 16\)"):
        load_gacn(tmp_path / "shape.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps({"a": 1})])
def test_garbage_files(tmp_path, content):
    p = tmp_path / "x.pkl"
    p.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_gacn(p)


def test_hostile_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    p = tmp_path / "evil.pkl"
    with open(p, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f)
        pickle.dump(1001, f)
        pickle.dump({}, f)
        pickle.dump(Evil(), f)
    with pytest.raises(CheckpointError, match="builtins.print"):
        load_gacn(p)


def test_truncated_checkpoint(weights, tmp_path):
    p = tmp_path / "cut.pkl"
    p.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated|not a readable"):
        load_gacn(p)
