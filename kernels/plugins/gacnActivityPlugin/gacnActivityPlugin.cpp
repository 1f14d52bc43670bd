/*
 * gacnActivityPlugin.cpp: see gacnActivityPlugin.h.
 */
#include "gacnActivityPlugin.h"

#include "gacn_kernels.h"

#include <memory>

namespace gacn
{
namespace plugin
{
namespace
{
constexpr char const* kNAME = "GacnActivity";
constexpr int32_t kFA = 0, kFB = 1, kBM = 2; // positions in inOut
constexpr int32_t kNB_INPUTS = 2, kNB_OUTPUTS = 1;
} // namespace

GacnActivityPlugin::GacnActivityPlugin(std::string layerName)
    : GacnPluginBase(kNAME, std::move(layerName), "gacn1")
{
}

nvinfer1::IPluginV3* GacnActivityPlugin::clone() noexcept
{
    return guarded(who(), "clone", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&] { return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnActivityPlugin>(*this).release()); });
}

int32_t GacnActivityPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t GacnActivityPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(who(), "getOutputDataTypes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(isFloatOrHalf(inputTypes[kFA]) && inputTypes[kFA] == inputTypes[kFB],
            "fa and fb must both be FLOAT or both HALF, got ", dataTypeName(inputTypes[kFA]), " and ",
            dataTypeName(inputTypes[kFB]));
        outputTypes[0] = inputTypes[kFB];
        return int32_t{0};
    });
}

int32_t GacnActivityPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(who(), "getOutputShapes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(nbShapeInputs == 0, "takes no shape inputs, got ", nbShapeInputs);
        GACN_PLUGIN_CHECK(inputs[kFA].nbDims == 4 && inputs[kFB].nbDims == 4,
            "fa and fb must be 4-D [N,C,H,W], got ranks ", inputs[kFA].nbDims, " and ", inputs[kFB].nbDims);
        outputs[0] = inputs[kFB]; // bm has the dims of fb
        return int32_t{0};
    });
}

bool GacnActivityPlugin::supportsFormatCombination(
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
    // fa decides FP32 or FP16; fb and bm follow it.
    return pos == kFA ? isFloatOrHalf(d.type) : d.type == inOut[kFA].desc.type;
}

void GacnActivityPlugin::checkShapes(nvinfer1::Dims const& fa, nvinfer1::Dims const& fb, nvinfer1::Dims const* bm)
{
    GACN_PLUGIN_CHECK(fa.nbDims == 4 && fb.nbDims == 4, "fa and fb must be 4-D [N,C,H,W], got fa ",
        dimsToString(fa), " and fb ", dimsToString(fb));
    GACN_PLUGIN_CHECK(compatible(fa.d[1], fb.d[1]) && compatible(fa.d[2], fb.d[2]) && compatible(fa.d[3], fb.d[3]),
        "fa ", dimsToString(fa), " and fb ", dimsToString(fb), " must have the same C, H and W");
    GACN_PLUGIN_CHECK(!known(fa.d[0]) || !known(fb.d[0]) || fa.d[0] == 1 || fa.d[0] == fb.d[0],
        "fa's batch must be 1 (one reference frame) or that of fb: fa ", dimsToString(fa), ", fb ",
        dimsToString(fb));
    if (bm != nullptr)
    {
        bool same = bm->nbDims == 4;
        for (int32_t i = 0; same && i < 4; ++i)
        {
            same = compatible(bm->d[i], fb.d[i]);
        }
        GACN_PLUGIN_CHECK(same, "bm ", dimsToString(*bm), " must have the dims of fb ", dimsToString(fb));
    }
}

int32_t GacnActivityPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "configurePlugin", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kFA].desc.dims, in[kFB].desc.dims, &out[0].desc.dims);
        return int32_t{0};
    });
}

int32_t GacnActivityPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "onShapeChange", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kFA].dims, in[kFB].dims, &out[0].dims);
        return int32_t{0};
    });
}

int32_t GacnActivityPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded(who(), "enqueue", int32_t{1}, [&] {
        nvinfer1::Dims const& fa = inputDesc[kFA].dims;
        nvinfer1::Dims const& fb = inputDesc[kFB].dims;
        checkShapes(fa, fb, &outputDesc[0].dims);
        if (volume(fb) == 0)
        {
            return int32_t{0};
        }
        int32_t const status = gacn_activity(inputs[kFA], inputs[kFB], outputs[0], toKernelInt(fb.d[0], "N"),
            toKernelInt(fa.d[0], "na"), toKernelInt(fb.d[1], "C"), toKernelInt(fb.d[2], "H"),
            toKernelInt(fb.d[3], "W"), kernelDtype(inputDesc[kFB].type), GACN_NCHW, stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_activity failed: ", kernelStatusString(status), " for fa ",
            dimsToString(fa), ", fb ", dimsToString(fb), " (", dataTypeName(inputDesc[kFB].type), ")");
        return int32_t{0};
    });
}

nvinfer1::PluginFieldCollection const* GacnActivityPlugin::getFieldsToSerialize() noexcept
{
    mFieldsToSerialize.nbFields = 0; // GacnActivity has no fields
    mFieldsToSerialize.fields = nullptr;
    return &mFieldsToSerialize;
}

// ---------------------------------------------------------------------------------------------

GacnActivityPluginCreator::GacnActivityPluginCreator() noexcept
    : GacnPluginCreatorBase(kNAME, nullptr, 0)
{
}

nvinfer1::IPluginV3* GacnActivityPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try // building the names may throw bad_alloc
    {
        std::string const layer = name != nullptr ? name : "";
        return guarded(concat(kNAME, "[", layer, "]"), "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
            if (fc != nullptr)
            {
                for (int32_t i = 0; i < fc->nbFields; ++i)
                {
                    logMessage(Severity::kWARNING,
                        concat(kNAME, "[", layer, "] createPlugin: ignoring unknown field '",
                            fc->fields[i].name != nullptr ? fc->fields[i].name : "", "'"));
                }
            }
            return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnActivityPlugin>(layer).release());
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
