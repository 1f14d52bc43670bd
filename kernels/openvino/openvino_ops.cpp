/*
 * openvino_ops.cpp: the OpenVINO extension library libgacn_openvino.so. It adds the operation
 * GacnActivityParts (opset "gacn") to OpenVINO and maps the ONNX node of the same name (domain
 * "gacn.openvino", written by engine/onnx_graph.py) to it, so the CPU plugin runs the fused
 * activity step of activity_parts.h on its own threads.
 *
 * Inputs: 4P tensors, in order u_A[0..P), u_B[0..P) (f32 [1,H,W,16], channels last) and s_A[0..P),
 * s_B[0..P) (f32, 16 elements each); output Bm f32 [1,H,W,16P] (channels last).
 */
#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/core/parallel.hpp>
#include <openvino/frontend/onnx/extension/op.hpp>
#include <openvino/op/op.hpp>

#include <vector>

#include "activity_parts.h"

namespace gacn_ov {

class GacnActivityParts : public ov::op::Op {
public:
    OPENVINO_OP("GacnActivityParts", "gacn");

    GacnActivityParts() = default;
    explicit GacnActivityParts(const ov::OutputVector& args) : Op(args) { constructor_validate_and_infer_types(); }

    void validate_and_infer_types() override {
        const size_t n = get_input_size();
        NODE_VALIDATION_CHECK(this, n >= 4 && n % 4 == 0, "GacnActivityParts takes 4P inputs, got ", n);
        const size_t parts = n / 4;
        for (size_t i = 0; i < n; ++i)
            NODE_VALIDATION_CHECK(this, get_input_element_type(i) == ov::element::f32, "input ", i, " is not f32");
        const ov::PartialShape& u = get_input_partial_shape(0);
        NODE_VALIDATION_CHECK(this, u.rank().is_dynamic() || u.rank().get_length() == 4, "features must be 4-D");
        ov::PartialShape out = u.rank().is_static() ? u : ov::PartialShape::dynamic(4);
        for (size_t i = 1; i < 2 * parts && out.rank().is_static(); ++i)
            NODE_VALIDATION_CHECK(this, ov::PartialShape::merge_into(out, get_input_partial_shape(i)),
                                  "feature parts differ in shape");
        if (out.rank().is_static()) {
            NODE_VALIDATION_CHECK(this, out[0].compatible(1) && out[3].compatible(16), "features must be [1,H,W,16]");
            out[3] = ov::Dimension(static_cast<int64_t>(16 * parts));
        }
        set_output_type(0, ov::element::f32, out);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<GacnActivityParts>(args);
    }
    bool visit_attributes(ov::AttributeVisitor&) override { return true; }
    bool has_evaluate() const override { return true; }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const size_t parts = inputs.size() / 4;
        const ov::Shape& shape = inputs[0].get_shape();
        for (size_t i = 0; i < 2 * parts; ++i)
            if (inputs[i].get_shape() != shape) return false;
        for (size_t i = 2 * parts; i < 4 * parts; ++i)
            if (inputs[i].get_size() != 16) return false;
        std::vector<const float*> ptrs(4 * parts);
        for (size_t i = 0; i < 4 * parts; ++i) ptrs[i] = inputs[i].data<const float>();
        if (shape.size() != 4 || shape[0] != 1 || shape[3] != 16) return false;
        outputs[0].set_shape({1, shape[1], shape[2], 16 * parts});
        const ActivityParts a{ptrs.data(), ptrs.data() + parts, ptrs.data() + 2 * parts, ptrs.data() + 3 * parts,
                              static_cast<int>(parts), static_cast<int>(shape[1]), static_cast<int>(shape[2]),
                              outputs[0].data<float>()};
        ov::parallel_for(activity_tasks(a), [&](size_t i) { activity_task(a, i); });
        return true;
    }
};

}  // namespace gacn_ov

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<gacn_ov::GacnActivityParts>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<gacn_ov::GacnActivityParts>>("GacnActivityParts", "gacn.openvino"),
}));
