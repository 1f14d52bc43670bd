"""The Triton models' code (engine.serve.models) on this environment's numpy (2.x; tests/serve runs
it on 1.26 in a real server), through a stand-in for Triton's ``triton_python_backend_utils``."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from engine.serve.repository import ModelOptions, pair_config


class TritonError(Exception):
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class Response:
    def __init__(self, output_tensors=(), error=None):
        self.outputs, self.error = {t.name: t.array for t in output_tensors}, error


class Request:
    def __init__(self, inputs: dict, outputs=("FUSED",), parameters=None):
        self.inputs, self.outputs, self.params = inputs, list(outputs), json.dumps(parameters or {})

    def requested_output_names(self):
        return self.outputs

    def parameters(self):
        return self.params


@pytest.fixture
def pb(monkeypatch):
    fake = types.SimpleNamespace(TritonError=TritonError, Tensor=Tensor, InferenceResponse=Response,
                                 get_input_tensor_by_name=lambda r, n: Tensor(n, r.inputs[n]) if n in r.inputs else None)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


def model(cls, weights, max_batch=0):
    from engine.serve import models
    m = getattr(models, cls)()
    o = ModelOptions(backend="onnxruntime", weights=str(weights), threads=2, max_batch=max_batch).check()
    config = {"max_batch_size": max_batch, "parameters": {k: {"string_value": v} for k, v in o.to_parameters().items()}}
    m.initialize({"model_config": json.dumps(config), "model_name": cls, "model_instance_kind": "CPU"})
    return m


@pytest.mark.parametrize("max_batch", [0, 4])
def test_pair_model_answers_each_request_and_refuses_bad_ones(pb, weights, ort_fuser, golden, max_batch):
    a, b, *_ = golden("color_lytro_01")
    a, b = a[:96, :80], b[:96, :80]
    lead = (lambda x: x[None]) if max_batch else (lambda x: x)
    m = model("PairModel", weights, max_batch)
    try:
        gray = a[..., :1].copy(), b[..., :1].copy()
        reqs = [Request({"A": lead(a), "B": lead(b)}, ["FUSED", "MASK"]),
                Request({"A": lead(a), "B": lead(b[:, :72])}),                  # size mismatch
                Request({"A": lead(gray[0]), "B": lead(gray[1])}),
                Request({"A": lead(a)}),                                          # missing input
                Request({"A": lead(a), "B": lead(b)}, parameters={"path": "/etc/passwd"})]
        r = m.execute(reqs)
        want = ort_fuser.fuse(a, b, maps=True)
        np.testing.assert_array_equal(r[0].outputs["FUSED"], lead(want.fused))
        np.testing.assert_array_equal(r[0].outputs["MASK"], lead(want.mask))
        assert "DECISION" not in r[0].outputs and r[0].error is None
        assert r[1].error.code == TritonError.INVALID_ARG and "size mismatch" in str(r[1].error)
        np.testing.assert_array_equal(r[2].outputs["FUSED"], lead(ort_fuser.fuse(gray[0][..., 0], gray[1][..., 0]).fused[..., None]))
        assert "input B is missing" in str(r[3].error) and "unknown request parameter" in str(r[4].error)
    finally:
        m.finalize()


def test_a_batch_with_an_aligned_pair_is_answered_one_by_one(pb, weights, ort_fuser, golden):
    """A dynamic batch that asks for alignment leaves Fuser.stream: each request is answered alone,
    from its one decoding, and a bad one still gets its own error."""
    a, b, *_ = golden("color_lytro_01")
    a, b = a[:96, :80], b[:96, :80]
    m = model("PairModel", weights, 4)
    parses = []
    real = m.parse
    m.parse = lambda r: parses.append(r) or real(r)
    try:
        reqs = [Request({"A": a[None], "B": b[None]}, ["FUSED"], {"align": "none"}),
                Request({"A": a[None], "B": b[None, :, :72]}),
                Request({"A": a[None], "B": b[None]}, ["FUSED"], {"align": "auto"})]
        r = m.execute(reqs)
        assert len(parses) == len(reqs)
        np.testing.assert_array_equal(r[0].outputs["FUSED"], ort_fuser.fuse(a, b).fused[None])
        assert r[1].error.code == TritonError.INVALID_ARG and "size mismatch" in str(r[1].error)
        np.testing.assert_array_equal(r[2].outputs["FUSED"], ort_fuser.fuse(a, b, align="auto").fused[None])
    finally:
        m.finalize()


def test_stack_model(pb, weights, ort_fuser):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)
    m = model("StackModel", weights)
    try:
        r = m.execute([Request({"FRAMES": frames}, ["FUSED", "INDEX"], {"strategy": "focus-weights", "align": "none"}),
                       Request({"FRAMES": frames[:1]}, ["FUSED"]), Request({"FRAMES": frames}, ["FUSED"], {"crop": "yes"})])
        want = ort_fuser.fuse_stack(frames, strategy="focus-weights", align="none")
        np.testing.assert_array_equal(r[0].outputs["FUSED"], want.fused)
        assert r[0].outputs["INDEX"].dtype == np.int32
        assert "at least 2 frames, got 1" in str(r[1].error) and "crop must be true or false" in str(r[2].error)
    finally:
        m.finalize()


def test_pair_config_is_what_the_model_reads(weights):
    text = pair_config("gacn", "TYPE_UINT8", ModelOptions(weights=str(weights), max_batch=2).check())
    assert 'key: "max_batch" value: { string_value: "2" }' in text and "allow_ragged_batch: true" in text


def test_a_model_without_weights_takes_the_default_checkpoint(pb, weights, monkeypatch):
    """No --weights: the instance resolves $GACN_WEIGHTS (or the verified download) like gacn-fuse
    (an option left unset is not in fuser_kwargs at all, so it must not be read as a key)."""
    from engine.serve import models
    monkeypatch.setenv("GACN_WEIGHTS", str(weights))
    o = ModelOptions(backend="onnxruntime", threads=2).check()
    m = models.PairModel()
    config = {"max_batch_size": 0, "parameters": {k: {"string_value": v} for k, v in o.to_parameters().items()}}
    m.initialize({"model_config": json.dumps(config), "model_name": "gacn", "model_instance_kind": "CPU"})
    try:
        assert m.fuser.backend == "onnxruntime"
    finally:
        m.finalize()
