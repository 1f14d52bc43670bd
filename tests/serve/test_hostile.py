"""Hostile requests: each is answered 400 / INVALID_ARGUMENT with a message, and the next good
request still succeeds (the instance keeps serving)."""
from __future__ import annotations

import http.client
import json

import numpy as np
import pytest

from engine.client import RemoteFuser
from engine.errors import InputError

RNG = np.random.default_rng(15)
GOOD = RNG.integers(0, 256, (2, 48, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def expected(local):
    return local.fuse(GOOD[0], GOOD[1]).fused


def still_serves(f: RemoteFuser, expected):
    np.testing.assert_array_equal(f.fuse(GOOD[0], GOOD[1]).fused, expected)


def img(shape, dtype=np.uint8):
    return RNG.integers(0, 200, shape).astype(dtype)


CLIENT_CASES = {   # what RemoteFuser sends as asked, and the server's message
    "mismatched sizes": (lambda f: f.fuse(img((64, 64, 3)), img((64, 72, 3))), "size mismatch"),
    "mismatched dtypes": (lambda f: f.fuse(img((64, 64, 3)), img((64, 64, 3), np.uint16)), "data-type is .UINT16."),
    "4 channels": (lambda f: f.fuse(img((64, 64, 4)), img((64, 64, 4))), "C = 1"),
    "zero-size tensor": (lambda f: f.fuse(img((0, 64, 3)), img((0, 64, 3))), "too small"),
    "side under 8 px": (lambda f: f.fuse(img((4, 64)), img((4, 64))), "too small"),
    "one-frame stack": (lambda f: f._infer("gacn_stack", {"FRAMES": img((1, 32, 32, 3))}, ["FUSED", "INDEX"], {}),
                        "at least 2 frames, got 1"),
    "unknown strategy": (lambda f: f.fuse_stack([img((32, 32, 3))] * 2, strategy="median"), "unknown stack strategy"),
    "unknown alignment": (lambda f: f.fuse(img((32, 32, 3)), img((32, 32, 3)), align="warp"), "unknown alignment"),
    "unknown request parameter": (lambda f: f._infer("gacn_stack", {"FRAMES": img((2, 32, 32, 3))}, ["FUSED"],
                                                     {"weights": "/etc/passwd"}), "unknown request parameter"),
}


@pytest.mark.parametrize("case", CLIENT_CASES)
def test_refused_then_serving(case, url, expected):
    send, message = CLIENT_CASES[case]
    with RemoteFuser(url, retries=0) as f:
        with pytest.raises(InputError, match=message):
            send(f)
        still_serves(f, expected)


def raw(server, model: str, header: dict, body: bytes = b"") -> tuple[int, str]:
    """One KServe v2 binary request by hand (what tritonclient would never send)."""
    head = json.dumps(header).encode()
    c = http.client.HTTPConnection(server.host, server.ports["http"], timeout=60)
    try:
        c.request("POST", f"/v2/models/{model}/infer", head + body,
                  {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def tensor(name, shape, nbytes):
    return {"name": name, "shape": shape, "datatype": "UINT8", "parameters": {"binary_data_size": nbytes}}


def test_raw_negative_control_is_accepted(server):
    """The hand-built request is well formed: the refusals below are for what each case changes."""
    data = GOOD[0][None].tobytes() + GOOD[1][None].tobytes()
    status, text = raw(server, "gacn", {"inputs": [tensor("A", [1, 48, 56, 3], data.__len__() // 2),
                                                   tensor("B", [1, 48, 56, 3], data.__len__() // 2)]}, data)
    assert status == 200, text


RAW_CASES = {
    "declared 100000 x 100000": ([1, 100000, 100000, 3], 100000 * 100000 * 3, 1024),
    "truncated binary body": ([1, 48, 56, 3], 48 * 56 * 3, 1000),
    "missing input": None,
}


@pytest.mark.parametrize("case", RAW_CASES)
def test_raw_refused_then_serving(case, server, expected):
    if case == "missing input":
        n = GOOD[0].nbytes
        status, text = raw(server, "gacn", {"inputs": [tensor("A", [1, 48, 56, 3], n)]}, GOOD[0].tobytes())
    else:
        shape, declared, sent = RAW_CASES[case]
        status, text = raw(server, "gacn", {"inputs": [tensor("A", shape, declared), tensor("B", shape, declared)]},
                           b"\0" * sent)
    assert status == 400, (status, text)
    assert json.loads(text)["error"]
    with RemoteFuser(server.url) as f:
        still_serves(f, expected)


def test_restricted_apis_closed(server):
    """Shared memory and the repository API need a header nobody was told."""
    for path in ("/v2/systemsharedmemory/status", "/v2/repository/index"):
        c = http.client.HTTPConnection(server.host, server.ports["http"], timeout=30)
        c.request("POST" if path.endswith("index") else "GET", path, b"{}" if path.endswith("index") else None)
        r = c.getresponse()
        assert r.status in (400, 403), (path, r.status)
        c.close()
