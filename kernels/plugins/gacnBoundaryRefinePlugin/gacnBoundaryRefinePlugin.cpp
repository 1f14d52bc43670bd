/*
 * gacnBoundaryRefinePlugin.cpp: see gacnBoundaryRefinePlugin.h.
 */
#include "gacnBoundaryRefinePlugin.h"

#include "gacn_kernels.h"

#include <memory>

namespace gacn
{
namespace plugin
{
namespace
{
constexpr char const* kNAME = "GacnBoundaryRefine";
constexpr int32_t kD4 = 0, kYA = 1, kYB = 2, kD = 3, kM = 4; // positions in inOut
constexpr int32_t kNB_INPUTS = 3, kNB_OUTPUTS = 2;

void checkSameDims(char const* name, nvinfer1::Dims const& dims, nvinfer1::Dims const& ref)
{
    bool same = dims.nbDims == ref.nbDims;
    for (int32_t i = 0; same && i < dims.nbDims; ++i)
    {
        same = compatible(dims.d[i], ref.d[i]);
    }
    GACN_PLUGIN_CHECK(same, name, " ", dimsToString(dims), " must have the dims of d4 ", dimsToString(ref));
}
} // namespace

GacnBoundaryRefinePlugin::GacnBoundaryRefinePlugin(std::string layerName)
    : GacnPluginBase(kNAME, std::move(layerName), "gacn1")
{
}

nvinfer1::IPluginV3* GacnBoundaryRefinePlugin::clone() noexcept
{
    return guarded(who(), "clone", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
        return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnBoundaryRefinePlugin>(*this).release());
    });
}

int32_t GacnBoundaryRefinePlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t GacnBoundaryRefinePlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(who(), "getOutputDataTypes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(
            isFloatOrHalf(inputTypes[kD4]), "d4 must be FLOAT or HALF, got ", dataTypeName(inputTypes[kD4]));
        GACN_PLUGIN_CHECK(
            inputTypes[kYA] == nvinfer1::DataType::kFLOAT && inputTypes[kYB] == nvinfer1::DataType::kFLOAT,
            "ya and yb must be FLOAT, got ", dataTypeName(inputTypes[kYA]), " and ", dataTypeName(inputTypes[kYB]));
        // D and M are FP32 whatever d4's type: the mask feeds the blend.
        outputTypes[0] = nvinfer1::DataType::kFLOAT;
        outputTypes[1] = nvinfer1::DataType::kFLOAT;
        return int32_t{0};
    });
}

int32_t GacnBoundaryRefinePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(who(), "getOutputShapes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(nbShapeInputs == 0, "takes no shape inputs, got ", nbShapeInputs);
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            GACN_PLUGIN_CHECK(inputs[i].nbDims == 4, "d4, ya and yb must be 4-D [N,1,H,W], input ", i, " has rank ",
                inputs[i].nbDims);
            nvinfer1::IDimensionExpr const* c = inputs[i].d[1];
            GACN_PLUGIN_CHECK(!c->isConstant() || c->getConstantValue() == 1,
                "d4, ya and yb must have one channel, input ", i, " has ", c->getConstantValue());
        }
        outputs[0] = inputs[kD4];
        outputs[1] = inputs[kD4];
        return int32_t{0};
    });
}

bool GacnBoundaryRefinePlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0
        || pos >= kNB_INPUTS + kNB_OUTPUTS)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    // d4 FP32 or FP16; the lumas and both outputs FP32.
    return pos == kD4 ? isFloatOrHalf(d.type) : d.type == nvinfer1::DataType::kFLOAT;
}

void GacnBoundaryRefinePlugin::checkShapes(nvinfer1::Dims const& d4, nvinfer1::Dims const& ya, nvinfer1::Dims const& yb,
    nvinfer1::Dims const* d, nvinfer1::Dims const* m)
{
    GACN_PLUGIN_CHECK(d4.nbDims == 4 && ya.nbDims == 4 && yb.nbDims == 4, "expected d4, ya, yb [N,1,H,W], got d4 ",
        dimsToString(d4), ", ya ", dimsToString(ya), ", yb ", dimsToString(yb));
    GACN_PLUGIN_CHECK(compatible(d4.d[1], 1) && compatible(ya.d[1], 1) && compatible(yb.d[1], 1),
        "d4, ya and yb must have one channel: d4 ", dimsToString(d4), ", ya ", dimsToString(ya), ", yb ",
        dimsToString(yb));
    GACN_PLUGIN_CHECK(compatible(d4.d[0], yb.d[0]), "d4 ", dimsToString(d4), " and yb ", dimsToString(yb),
        " must have the same batch N");
    for (int32_t i = 2; i < 4; ++i)
    {
        GACN_PLUGIN_CHECK(compatible(d4.d[i], ya.d[i]) && compatible(d4.d[i], yb.d[i]), "d4 ", dimsToString(d4),
            ", ya ", dimsToString(ya), " and yb ", dimsToString(yb), " must have the same H and W");
        GACN_PLUGIN_CHECK(!known(d4.d[i]) || d4.d[i] >= kMIN_EXTENT, "H and W must be at least ", kMIN_EXTENT,
            " (the guided filter's 7x7 window), got d4 ", dimsToString(d4));
    }
    GACN_PLUGIN_CHECK(!known(ya.d[0]) || !known(yb.d[0]) || ya.d[0] == 1 || ya.d[0] == yb.d[0],
        "ya's batch must be 1 (one reference frame) or that of yb: ya ", dimsToString(ya), ", yb ", dimsToString(yb));
    if (d != nullptr)
    {
        checkSameDims("d", *d, d4);
    }
    if (m != nullptr)
    {
        checkSameDims("m", *m, d4);
    }
}

int32_t GacnBoundaryRefinePlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "configurePlugin", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kD4].desc.dims, in[kYA].desc.dims, in[kYB].desc.dims, &out[0].desc.dims, &out[1].desc.dims);
        // Dynamic H, W: the optimisation profile must not allow sizes the kernel rejects.
        nvinfer1::Dims const& lo = in[kD4].min;
        for (int32_t i = 2; i < 4 && lo.nbDims == 4; ++i)
        {
            GACN_PLUGIN_CHECK(lo.d[i] <= 0 || lo.d[i] >= kMIN_EXTENT, "the optimisation profile allows H, W down to ",
                dimsToString(lo), " at this layer; GacnBoundaryRefine needs H and W >= ", kMIN_EXTENT,
                ": raise the profile's minimum shape");
        }
        return int32_t{0};
    });
}

int32_t GacnBoundaryRefinePlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "onShapeChange", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kD4].dims, in[kYA].dims, in[kYB].dims, &out[0].dims, &out[1].dims);
        return int32_t{0};
    });
}

int32_t GacnBoundaryRefinePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded(who(), "enqueue", int32_t{1}, [&] {
        nvinfer1::Dims const& d4 = inputDesc[kD4].dims;
        nvinfer1::Dims const& ya = inputDesc[kYA].dims;
        checkShapes(d4, ya, inputDesc[kYB].dims, &outputDesc[0].dims, &outputDesc[1].dims);
        if (d4.d[0] == 0)
        {
            return int32_t{0}; // empty batch
        }
        int32_t const status = gacn_boundary_refine(inputs[kD4], static_cast<float const*>(inputs[kYA]),
            static_cast<float const*>(inputs[kYB]), static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
            toKernelInt(d4.d[0], "N"), toKernelInt(ya.d[0], "na"), toKernelInt(d4.d[2], "H"),
            toKernelInt(d4.d[3], "W"), kernelDtype(inputDesc[kD4].type), stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_boundary_refine failed: ", kernelStatusString(status), " for d4 ",
            dimsToString(d4), " (", dataTypeName(inputDesc[kD4].type), "), ya ", dimsToString(ya));
        return int32_t{0};
    });
}

nvinfer1::PluginFieldCollection const* GacnBoundaryRefinePlugin::getFieldsToSerialize() noexcept
{
    mFieldsToSerialize.nbFields = 0; // GacnBoundaryRefine has no fields
    mFieldsToSerialize.fields = nullptr;
    return &mFieldsToSerialize;
}

// ---------------------------------------------------------------------------------------------

GacnBoundaryRefinePluginCreator::GacnBoundaryRefinePluginCreator() noexcept
    : GacnPluginCreatorBase(kNAME, nullptr, 0)
{
}

nvinfer1::IPluginV3* GacnBoundaryRefinePluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try // building the names may throw bad_alloc
    {
        std::string const layer = name != nullptr ? name : "";
        std::string const who = concat(kNAME, "[", layer, "]");
        return guarded(who, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
            {
                logMessage(Severity::kWARNING,
                    concat(who, " createPlugin: ignoring unknown field '",
                        fc->fields[i].name != nullptr ? fc->fields[i].name : "", "'"));
            }
            return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnBoundaryRefinePlugin>(layer).release());
        });
    }
    catch (...)
    {
        reportFailure(kNAME, "createPlugin", "out of memory");
    }
    return nullptr;
}

} // namespace plugin
} // namespace gacn
