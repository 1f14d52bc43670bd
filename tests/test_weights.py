"""Weights resolution: explicit path, environment, verified download, clear offline message."""
import hashlib

import pytest

from engine import weights as W
from engine.errors import CheckpointError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GACN_WEIGHTS", raising=False)
    return tmp_path / "cache" / "gacn-engine" / "GACN.pkl"


def test_explicit_path_wins(weights, cache, monkeypatch):
    monkeypatch.setenv("GACN_WEIGHTS", "/nonexistent")
    assert W.resolve_weights(weights) == weights


def test_env_variable(weights, cache, monkeypatch):
    monkeypatch.setenv("GACN_WEIGHTS", str(weights))
    assert W.resolve_weights() == weights


def test_missing_explicit_file(cache, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        W.resolve_weights(tmp_path / "missing.pkl")


def test_download_verified_and_cached(weights, cache, monkeypatch):
    monkeypatch.setenv("GACN_WEIGHTS_URL", weights.as_uri())
    assert W.resolve_weights() == cache
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == W.OFFICIAL_SHA256
    monkeypatch.setenv("GACN_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")
    assert W.resolve_weights() == cache  # served from the cache, no network


def test_checksum_mismatch_is_refused(cache, tmp_path, monkeypatch):
    fake = tmp_path / "fake.pkl"
    fake.write_bytes(b"x" * 1000)
    monkeypatch.setenv("GACN_WEIGHTS_URL", fake.as_uri())
    with pytest.raises(CheckpointError, match="not the official"):
        W.resolve_weights()
    assert not cache.exists()


def test_offline_message_for_python_callers(cache, monkeypatch):
    monkeypatch.setenv("GACN_WEIGHTS_URL", "http://127.0.0.1:9/GACN.pkl")
    with pytest.raises(CheckpointError) as e:
        W.resolve_weights()
    text = str(e.value)
    assert "offline" in text and "GACN_WEIGHTS" in text and "Fuser(weights=PATH)" in text, text
    assert "--weights" not in text, text
    assert "--weights PATH" in e.value.cli_message and "weights=" not in e.value.cli_message


def test_offline_message_through_the_api_and_the_cli(cache, monkeypatch, data_dir, tmp_path, capsys):
    from engine import Fuser
    from engine.cli import main
    monkeypatch.setenv("GACN_WEIGHTS_URL", "http://127.0.0.1:9/GACN.pkl")
    with pytest.raises(CheckpointError, match=r"Fuser\(weights=PATH\)") as e:
        Fuser("onnxruntime")
    assert "--weights" not in str(e.value)
    pair = [str(data_dir / "pairs" / f"color_tid_t5_{i}.png") for i in (1, 2)]
    assert main([*pair, "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no --weights given" in err and "--weights PATH" in err and "weights=" not in err, err
    with pytest.raises(CheckpointError, match=r"from weights=\)"):
        Fuser("onnxruntime", weights=tmp_path / "missing.pkl")
