"""The exported portable graph and the plugin graphs."""
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import REPO
from engine import preprocess
from engine.onnx_graph import OPSET


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "gacn.onnx"
    r = subprocess.run([sys.executable, str(REPO / "export" / "export_onnx.py"), "--weights", str(weights), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_portable_graph_is_standard_and_dynamic(exported, weights):
    from engine.checkpoint import sha256_of
    model = onnx.load(exported)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert {o.domain for o in model.opset_import} == {""} and model.opset_import[0].version >= 17 == OPSET
    assert all(n.domain == "" for n in model.graph.node)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["frames", 1, "height", "width"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gacn.checkpoint_sha256"] == sha256_of(weights)
    assert meta["gacn.spec_sections"] and meta["gacn.exporter"].startswith("gacn-engine")
    for n in model.graph.node:  # a one-element pads list is what breaks torch exports
        for a in n.attribute:
            if a.name == "pads":
                assert len(a.ints) == 4


def test_exported_file_runs_like_the_built_graph(exported, weights, golden):
    from conftest import golden_names
    from engine import Fuser
    a, b, *_ = golden(golden_names()[-1])  # non-square colour pair
    with Fuser("onnxruntime", onnx=exported) as f1, Fuser("onnxruntime", weights=weights) as f2:
        r1, r2 = f1.fuse(a, b, maps=True), f2.fuse(a, b, maps=True)
    np.testing.assert_array_equal(r1.mask, r2.mask)
    np.testing.assert_array_equal(r1.fused, r2.fused)


def test_batched_reference_equals_pairs(ort_fuser, golden):
    """K > 2 frames share frame 0's features: each output equals the pair (0, k) run alone."""
    from conftest import golden_names
    a, b, *_ = golden(golden_names()[0])
    c = a[:, ::-1].copy()
    ya, yb, yc = (preprocess.luma(x) for x in (a, b, c))
    infer = ort_fuser.pipeline.ex.runner.infer
    d3, m3 = infer(np.stack([ya, yb, yc])[:, None])
    for k, y in enumerate((yb, yc)):
        d, m = infer(np.stack([ya, y])[:, None])
        np.testing.assert_allclose(m3[k], m[0], atol=2e-6)
        np.testing.assert_allclose(d3[k], d[0], atol=2e-6)


@pytest.mark.parametrize("fp16", [False, True])
def test_plugin_graph_types(params, fp16):
    from engine.onnx_graph import build_model
    model = build_model(params, plugins=True, fp16=fp16)
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    act = onnx.TensorProto.FLOAT16 if fp16 else onnx.TensorProto.FLOAT
    ops = {}
    for n in model.graph.node:
        ops.setdefault(n.op_type, []).append(n)
    assert len(ops["GacnActivity"]) == 1 and len(ops["GacnSpatialGate"]) == 5 and len(ops["GacnBoundaryRefine"]) == 1
    # features stay float32; Bm leaves the activity in the decision path's type (out_half, no Cast)
    assert [types[i] for i in ops["GacnActivity"][0].input[:2]] == [onnx.TensorProto.FLOAT] * 2
    for n in ops["GacnActivity"] + ops["GacnSpatialGate"]:
        assert types[n.output[0]] == act, n.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
    assert [types[o] for o in ops["GacnBoundaryRefine"][0].output] == [onnx.TensorProto.FLOAT] * 2
    # features: four GacnFeatureConv nodes on unscaled inputs (kernel ABI 3), 3xTF32 by default,
    # float32 outputs u [K,16,H,W] and s [K,16]; the activity takes the scales (scaled = 1)
    convs = ops["GacnFeatureConv"]
    assert len(convs) == 4 and all(len(n.input) == 7 and len(n.output) == 2 for n in convs)
    for n in convs:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["algo"] == 1 and attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
        assert [types[o] for o in n.output] == [onnx.TensorProto.FLOAT] * 2
    act_attrs = {a.name: onnx.helper.get_attribute_value(a) for a in ops["GacnActivity"][0].attribute}
    assert len(ops["GacnActivity"][0].input) == 4 and act_attrs["scaled"] == 1 and act_attrs["out_half"] == int(fp16)
    assert not any(n.op_type == "Cast" and n.input[0] == ops["GacnActivity"][0].output[0] for n in model.graph.node)
    assert "ReduceMean" not in ops  # no CSE means in the graph: the plugins form them
    big_convs = [n for n in ops["Conv"] if types.get(n.output[0]) is not None and "cse" not in n.output[0]]
    conv_types = {types[n.output[0]] for n in ops["Conv"]}
    assert act in conv_types and big_convs
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
