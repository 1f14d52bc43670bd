/*
 * gacnSpatialGatePlugin.cpp: see gacnSpatialGatePlugin.h.
 */
#include "gacnSpatialGatePlugin.h"

#include "gacn_kernels.h"

#include <cstring>
#include <memory>

namespace gacn
{
namespace plugin
{
namespace
{
constexpr char const* kNAME = "GacnSpatialGate";
constexpr char const* kRELU = "relu";
constexpr int32_t kX = 0, kWEIGHT = 1, kBN = 2, kY = 3; // positions in inOut
constexpr int32_t kNB_INPUTS = 3, kNB_OUTPUTS = 1;
constexpr int64_t kTAPS = 7; // the SSE convolution is 7x7
} // namespace

GacnSpatialGatePlugin::GacnSpatialGatePlugin(std::string layerName, int32_t relu)
    : GacnPluginBase(kNAME, std::move(layerName), relu ? "gacn1;relu=1" : "gacn1;relu=0")
    , mRelu(relu ? 1 : 0)
{
}

nvinfer1::IPluginV3* GacnSpatialGatePlugin::clone() noexcept
{
    return guarded(who(), "clone", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&] { return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnSpatialGatePlugin>(*this).release()); });
}

int32_t GacnSpatialGatePlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t GacnSpatialGatePlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(who(), "getOutputDataTypes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(isFloatOrHalf(inputTypes[kX]), "x must be FLOAT or HALF, got ", dataTypeName(inputTypes[kX]));
        GACN_PLUGIN_CHECK(inputTypes[kWEIGHT] == nvinfer1::DataType::kFLOAT
                && inputTypes[kBN] == nvinfer1::DataType::kFLOAT,
            "weight and bn must be FLOAT (float32 initializers), got ", dataTypeName(inputTypes[kWEIGHT]), " and ",
            dataTypeName(inputTypes[kBN]));
        outputTypes[0] = inputTypes[kX];
        return int32_t{0};
    });
}

int32_t GacnSpatialGatePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(who(), "getOutputShapes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(nbShapeInputs == 0, "takes no shape inputs, got ", nbShapeInputs);
        nvinfer1::DimsExprs const& x = inputs[kX];
        nvinfer1::DimsExprs const& w = inputs[kWEIGHT];
        nvinfer1::DimsExprs const& bn = inputs[kBN];
        GACN_PLUGIN_CHECK(x.nbDims == 4 && w.nbDims == 3 && bn.nbDims == 2,
            "expected x [N,C,H,W], weight [C,7,7] and bn [2,C], got ranks ", x.nbDims, ", ", w.nbDims, " and ",
            bn.nbDims);
        // Build-time check of the constant extents (weight and bn are initializers, C is static).
        auto value = [](nvinfer1::IDimensionExpr const* e) { return e->isConstant() ? e->getConstantValue() : -1; };
        nvinfer1::Dims xd{}, wd{}, bnd{};
        xd.nbDims = 4;
        wd.nbDims = 3;
        bnd.nbDims = 2;
        for (int32_t i = 0; i < 4; ++i)
        {
            xd.d[i] = value(x.d[i]);
        }
        for (int32_t i = 0; i < 3; ++i)
        {
            wd.d[i] = value(w.d[i]);
        }
        for (int32_t i = 0; i < 2; ++i)
        {
            bnd.d[i] = value(bn.d[i]);
        }
        checkShapes(xd, wd, bnd, nullptr);
        outputs[0] = x;
        return int32_t{0};
    });
}

bool GacnSpatialGatePlugin::supportsFormatCombination(
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
    switch (pos)
    {
    case kX: return isFloatOrHalf(d.type);
    case kWEIGHT:
    case kBN: return d.type == nvinfer1::DataType::kFLOAT;
    default: return d.type == inOut[kX].desc.type; // y follows x
    }
}

void GacnSpatialGatePlugin::checkShapes(
    nvinfer1::Dims const& x, nvinfer1::Dims const& weight, nvinfer1::Dims const& bn, nvinfer1::Dims const* y)
{
    GACN_PLUGIN_CHECK(x.nbDims == 4 && weight.nbDims == 3 && bn.nbDims == 2,
        "expected x [N,C,H,W], weight [C,7,7] and bn [2,C], got x ", dimsToString(x), ", weight ",
        dimsToString(weight), ", bn ", dimsToString(bn));
    GACN_PLUGIN_CHECK(compatible(weight.d[1], kTAPS) && compatible(weight.d[2], kTAPS), "weight ",
        dimsToString(weight), " must be [C,7,7]");
    GACN_PLUGIN_CHECK(compatible(bn.d[0], 2), "bn ", dimsToString(bn), " must be [2,C] (scale row, shift row)");
    GACN_PLUGIN_CHECK(compatible(weight.d[0], x.d[1]) && compatible(bn.d[1], x.d[1]), "channel mismatch: x ",
        dimsToString(x), " has C = ", x.d[1], ", weight is ", dimsToString(weight), ", bn is ", dimsToString(bn));
    if (y != nullptr)
    {
        bool same = y->nbDims == 4;
        for (int32_t i = 0; same && i < 4; ++i)
        {
            same = compatible(y->d[i], x.d[i]);
        }
        GACN_PLUGIN_CHECK(same, "y ", dimsToString(*y), " must have the dims of x ", dimsToString(x));
    }
}

int32_t GacnSpatialGatePlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "configurePlugin", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kX].desc.dims, in[kWEIGHT].desc.dims, in[kBN].desc.dims, &out[0].desc.dims);
        return int32_t{0};
    });
}

int32_t GacnSpatialGatePlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "onShapeChange", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        checkShapes(in[kX].dims, in[kWEIGHT].dims, in[kBN].dims, &out[0].dims);
        return int32_t{0};
    });
}

int32_t GacnSpatialGatePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded(who(), "enqueue", int32_t{1}, [&] {
        nvinfer1::Dims const& x = inputDesc[kX].dims;
        checkShapes(x, inputDesc[kWEIGHT].dims, inputDesc[kBN].dims, &outputDesc[0].dims);
        if (volume(x) == 0)
        {
            return int32_t{0};
        }
        int32_t const status = gacn_spatial_gate(inputs[kX], static_cast<float const*>(inputs[kWEIGHT]),
            static_cast<float const*>(inputs[kBN]), mRelu, outputs[0], toKernelInt(x.d[0], "N"),
            toKernelInt(x.d[1], "C"), toKernelInt(x.d[2], "H"), toKernelInt(x.d[3], "W"),
            kernelDtype(inputDesc[kX].type), GACN_NCHW, stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_spatial_gate failed: ", kernelStatusString(status), " for x ",
            dimsToString(x), " (", dataTypeName(inputDesc[kX].type), "), relu ", mRelu);
        return int32_t{0};
    });
}

nvinfer1::PluginFieldCollection const* GacnSpatialGatePlugin::getFieldsToSerialize() noexcept
{
    return guarded(who(), "getFieldsToSerialize", static_cast<nvinfer1::PluginFieldCollection const*>(nullptr), [&] {
        mFields.clear();
        mFields.emplace_back(kRELU, &mRelu, nvinfer1::PluginFieldType::kINT32, 1);
        mFieldsToSerialize.nbFields = static_cast<int32_t>(mFields.size());
        mFieldsToSerialize.fields = mFields.data();
        return static_cast<nvinfer1::PluginFieldCollection const*>(&mFieldsToSerialize);
    });
}

// ---------------------------------------------------------------------------------------------

GacnSpatialGatePluginCreator::GacnSpatialGatePluginCreator() noexcept
    : GacnPluginCreatorBase(kNAME, mFieldNames, 1)
    , mFieldNames{nvinfer1::PluginField(kRELU, nullptr, nvinfer1::PluginFieldType::kINT32, 1)}
{
}

nvinfer1::IPluginV3* GacnSpatialGatePluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try // building the names may throw bad_alloc
    {
        std::string const layer = name != nullptr ? name : "";
        std::string const who = concat(kNAME, "[", layer, "]");
        return guarded(who, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
            int32_t relu = 0; // default when the attribute is absent
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
            {
                nvinfer1::PluginField const& f = fc->fields[i];
                if (f.name != nullptr && std::strcmp(f.name, kRELU) == 0)
                {
                    relu = readIntField(f);
                    GACN_PLUGIN_CHECK(relu == 0 || relu == 1, "field 'relu' must be 0 or 1, got ", relu);
                }
                else
                {
                    logMessage(Severity::kWARNING,
                        concat(who, " createPlugin: ignoring unknown field '", f.name != nullptr ? f.name : "", "'"));
                }
            }
            return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnSpatialGatePlugin>(layer, relu).release());
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
