"""OpenVINO's bfloat16 decision path (``--precision bf16``): one compiled model in which the
decision path's convolutions and gates (spec section 5, the nodes named DECISION_SCOPE...)
run in bfloat16 and every other node (features, CSE, activity, boundary refinement) in
float32.

How: the model is compiled with ``INFERENCE_PRECISION_HINT=bf16`` after every floating-point
node outside the decision path was given OpenVINO's ``DisablePrecisionConversion`` runtime
attribute (what ``ov::disable_conversion`` sets; the CPU plugin then keeps the node's original
precision). Python cannot create that attribute, so the model makes one round trip through
OpenVINO's IR, whose reader does. The attribute does not follow a node that a graph
transformation replaces, so the graph is written so that none is (GacnGraph.cse_scale,
boundary_refine), and ``check_precisions`` reads the compiled model's runtime graph to prove
that the split held: a compiled model that runs anything outside the decision path in
bfloat16, or nothing inside it, is refused.

Measured on the 12 golden pairs against the float32 reference: benchmarks/RESULTS.md (issue 17).
"""
from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from engine.errors import BackendError
from engine.variants import DECISION_SCOPE

ATTRIBUTE = "DisablePrecisionConversion"   # ov::DisablePrecisionConversion's RTTI name, version 0
KEEP_ALL = "dynamic:dynamic"               # no conversion from any type to any type


def cpu_has_bf16(core) -> bool:
    """True where OpenVINO's CPU plugin runs bfloat16 natively (AVX512_BF16 or AMX)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def require_bf16(core) -> None:
    if not cpu_has_bf16(core):
        raise BackendError("--precision bf16 needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX; "
                           "OpenVINO reports none here); use --precision fp32")


def decision_path(model) -> set[str]:
    """Friendly names of the ops between the first and last DECISION_SCOPE node (the ops
    OpenVINO's ONNX reader added inside the path included)."""
    ops = model.get_ordered_ops()
    tagged = [op for op in ops if op.get_friendly_name().startswith(DECISION_SCOPE)]
    if not tagged:
        raise BackendError(f"this GACN graph has no '{DECISION_SCOPE}' nodes (exported by an older version?): "
                           "it cannot run with --precision bf16; re-export it or use the checkpoint")

    def reach(step) -> set[str]:
        seen, todo = set(), list(tagged)
        while todo:
            for nxt in step(todo.pop()):
                if nxt.get_friendly_name() not in seen:
                    seen.add(nxt.get_friendly_name())
                    todo.append(nxt)
        return seen

    down = reach(lambda op: [t.get_node() for out in op.outputs() for t in out.get_target_inputs()])
    up = reach(lambda op: [i.get_source_output().get_node() for i in op.inputs()])
    names = {op.get_friendly_name() for op in tagged}
    return (down | names) & (up | names)


def mark_float32(core, model):
    """The model with every float32 op outside the decision path kept in float32."""
    import numpy as np
    import openvino as ov
    inside = decision_path(model)
    keep = {op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() not in ("Parameter", "Result", "Constant")
            and op.get_friendly_name() not in inside
            and all(out.get_element_type() == ov.Type.f32 for out in op.outputs())}
    with tempfile.TemporaryDirectory(prefix="gacn-bf16-") as tmp:
        xml, bin_ = Path(tmp, "m.xml"), Path(tmp, "m.bin")
        ov.save_model(model, str(xml), compress_to_fp16=False)
        tree = ET.parse(xml)
        for layer in tree.getroot().iter("layer"):
            if layer.get("name") in keep:
                rt = layer.find("rt_info")
                rt = ET.SubElement(layer, "rt_info") if rt is None else rt
                ET.SubElement(rt, "attribute", name=ATTRIBUTE, version="0", value=KEEP_ALL)
        weights = ov.Tensor(np.fromfile(bin_, np.uint8)) if bin_.stat().st_size else ov.Tensor(np.zeros(1, np.uint8))
        return core.read_model(ET.tostring(tree.getroot()), weights)


def runtime_precisions(compiled) -> list[tuple[str, str, list[str]]]:
    """(layer type, runtime precision, original op names) of each node the CPU plugin runs."""
    out = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Input", "Output", "Const", "Reorder"):
            continue
        names = [n for n in info["originalLayersNames"].astype(str).split(",") if n]
        out.append((kind, info["runtimePrecision"].astype(str), names))
    return out


def check_precisions(compiled):
    """The compiled model, if it runs the decision path's convolutions in bfloat16 and nothing
    else; else BackendError."""
    nodes = runtime_precisions(compiled)
    outside = [n for kind, prec, names in nodes if prec == "bf16"
               for n in names if not n.startswith(DECISION_SCOPE)]
    if outside:
        raise BackendError(f"openvino would run {len(outside)} op(s) outside the decision path in bfloat16 "
                           f"({', '.join(outside[:3])}...); refusing to run this model")
    if not any(kind == "Convolution" and prec == "bf16" for kind, prec, _ in nodes):
        raise BackendError("openvino compiled no decision-path convolution in bfloat16; refusing to run this model")
    return compiled
