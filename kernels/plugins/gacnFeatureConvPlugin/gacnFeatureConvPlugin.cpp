/*
 * gacnFeatureConvPlugin.cpp: see gacnFeatureConvPlugin.h.
 */
#include "gacnFeatureConvPlugin.h"

#include "gacn_kernels.h"

#include <cstring>
#include <memory>

namespace gacn
{
namespace plugin
{
namespace
{
constexpr char const* kNAME = "GacnFeatureConv";
constexpr char const* kALGO = "algo";
// positions in inOut
constexpr int32_t kX = 0, kWEIGHT = 1, kBIAS = 2, kBN = 3, kFC1 = 4, kFC2 = 5, kSCALE = 6, kU = 7, kS = 8;
constexpr int32_t kNB_INPUTS = 7, kNB_OUTPUTS = 2;
constexpr int64_t kCOUT = 16; // the feature blocks' output channels
constexpr int64_t kHIDDEN = 2; // the CSE's hidden width

nvinfer1::Dims toDims(nvinfer1::DimsExprs const& e)
{
    nvinfer1::Dims d{};
    d.nbDims = e.nbDims;
    for (int32_t i = 0; i < e.nbDims; ++i)
    {
        d.d[i] = e.d[i]->isConstant() ? e.d[i]->getConstantValue() : -1;
    }
    return d;
}

//! Partial sums per image of gacn_feature_conv for an h x w image (the kernels' 16 x 64 tiles).
int64_t partialFloats(int64_t h, int64_t w)
{
    return static_cast<int64_t>(gacn_conv3x3_c16_partials(toKernelInt(h, "H"), toKernelInt(w, "W"))) * kCOUT;
}
} // namespace

GacnFeatureConvPlugin::GacnFeatureConvPlugin(std::string layerName, int32_t algo)
    : GacnPluginBase(kNAME, std::move(layerName), algo == GACN_CONV_FFMA ? "gacn1;algo=0" : "gacn1;algo=1")
    , mAlgo(algo == GACN_CONV_FFMA ? GACN_CONV_FFMA : GACN_CONV_3XTF32)
{
}

nvinfer1::IPluginV3* GacnFeatureConvPlugin::clone() noexcept
{
    return guarded(who(), "clone", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&] { return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnFeatureConvPlugin>(*this).release()); });
}

int32_t GacnFeatureConvPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t GacnFeatureConvPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(who(), "getOutputDataTypes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            GACN_PLUGIN_CHECK(inputTypes[i] == nvinfer1::DataType::kFLOAT, "input ", i,
                " must be FLOAT (the features stay float32: float16 features move up to 1.6 % of D), got ",
                dataTypeName(inputTypes[i]));
        }
        outputTypes[0] = nvinfer1::DataType::kFLOAT;
        outputTypes[1] = nvinfer1::DataType::kFLOAT;
        return int32_t{0};
    });
}

int32_t GacnFeatureConvPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(who(), "getOutputShapes", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        GACN_PLUGIN_CHECK(nbShapeInputs == 0, "takes no shape inputs, got ", nbShapeInputs);
        nvinfer1::Dims in[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            in[i] = toDims(inputs[i]);
        }
        checkShapes(in, nullptr); // build-time check of what is known (the weights are initializers)
        nvinfer1::DimsExprs const& x = inputs[kX];
        nvinfer1::IDimensionExpr const* cout = inputs[kWEIGHT].d[0]; // the constant 16 (checked)
        outputs[0].nbDims = 4;
        outputs[0].d[0] = x.d[0];
        outputs[0].d[1] = cout;
        outputs[0].d[2] = x.d[2];
        outputs[0].d[3] = x.d[3];
        outputs[1].nbDims = 2;
        outputs[1].d[0] = x.d[0];
        outputs[1].d[1] = cout;
        return int32_t{0};
    });
}

bool GacnFeatureConvPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0
        || pos >= kNB_INPUTS + kNB_OUTPUTS)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    return d.format == nvinfer1::TensorFormat::kLINEAR && d.type == nvinfer1::DataType::kFLOAT;
}

void GacnFeatureConvPlugin::checkShapes(nvinfer1::Dims const* in, nvinfer1::Dims const* out)
{
    nvinfer1::Dims const& x = in[kX];
    nvinfer1::Dims const& w = in[kWEIGHT];
    GACN_PLUGIN_CHECK(x.nbDims == 4 && w.nbDims == 4 && in[kBIAS].nbDims == 1 && in[kBN].nbDims == 2
            && in[kFC1].nbDims == 2 && in[kFC2].nbDims == 2 && in[kSCALE].nbDims == 2,
        "expected x [N,cin,H,W], weight [16,cin,3,3], bias [16], bn [2,16], fc1 [2,16], fc2 [16,2], in_scale "
        "[N,cin], got x ",
        dimsToString(x), ", weight ", dimsToString(w), ", bias ", dimsToString(in[kBIAS]), ", bn ",
        dimsToString(in[kBN]), ", fc1 ", dimsToString(in[kFC1]), ", fc2 ", dimsToString(in[kFC2]), ", in_scale ",
        dimsToString(in[kSCALE]));
    GACN_PLUGIN_CHECK(compatible(w.d[0], kCOUT) && compatible(w.d[2], 3) && compatible(w.d[3], 3), "weight ",
        dimsToString(w), " must be [16,cin,3,3]");
    GACN_PLUGIN_CHECK(compatible(w.d[1], x.d[1]), "channel mismatch: x ", dimsToString(x), " has cin = ", x.d[1],
        ", weight is ", dimsToString(w));
    GACN_PLUGIN_CHECK(compatible(in[kBIAS].d[0], kCOUT) && compatible(in[kBN].d[0], 2)
            && compatible(in[kBN].d[1], kCOUT),
        "bias ", dimsToString(in[kBIAS]), " must be [16] and bn ", dimsToString(in[kBN]), " [2,16]");
    GACN_PLUGIN_CHECK(compatible(in[kFC1].d[0], kHIDDEN) && compatible(in[kFC1].d[1], kCOUT)
            && compatible(in[kFC2].d[0], kCOUT) && compatible(in[kFC2].d[1], kHIDDEN),
        "fc1 ", dimsToString(in[kFC1]), " must be [2,16] and fc2 ", dimsToString(in[kFC2]), " [16,2]");
    GACN_PLUGIN_CHECK(compatible(in[kSCALE].d[0], x.d[0]) && compatible(in[kSCALE].d[1], x.d[1]), "in_scale ",
        dimsToString(in[kSCALE]), " must be [N,cin] for x ", dimsToString(x));
    if (out != nullptr)
    {
        nvinfer1::Dims const& u = out[0];
        nvinfer1::Dims const& s = out[1];
        GACN_PLUGIN_CHECK(u.nbDims == 4 && compatible(u.d[0], x.d[0]) && compatible(u.d[1], kCOUT)
                && compatible(u.d[2], x.d[2]) && compatible(u.d[3], x.d[3]) && s.nbDims == 2
                && compatible(s.d[0], x.d[0]) && compatible(s.d[1], kCOUT),
            "outputs u ", dimsToString(u), " and s ", dimsToString(s), " must be [N,16,H,W] and [N,16] for x ",
            dimsToString(x));
    }
}

int32_t GacnFeatureConvPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "configurePlugin", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        nvinfer1::Dims ins[kNB_INPUTS], outs[kNB_OUTPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            ins[i] = in[i].desc.dims;
        }
        outs[0] = out[0].desc.dims;
        outs[1] = out[1].desc.dims;
        checkShapes(ins, outs);
        return int32_t{0};
    });
}

size_t GacnFeatureConvPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return guarded(who(), "getWorkspaceSize", size_t{0}, [&] {
        GACN_PLUGIN_CHECK(inputs != nullptr && nbInputs == kNB_INPUTS, "expected ", kNB_INPUTS, " inputs, got ",
            nbInputs);
        nvinfer1::Dims const& mx = inputs[kX].max;
        GACN_PLUGIN_CHECK(mx.nbDims == 4 && known(mx.d[0]) && known(mx.d[2]) && known(mx.d[3]),
            "x's maximum dims ", dimsToString(mx), " must be known");
        if (volume(mx) == 0)
        {
            return size_t{0};
        }
        return static_cast<size_t>(mx.d[0]) * static_cast<size_t>(partialFloats(mx.d[2], mx.d[3])) * sizeof(float);
    });
}

int32_t GacnFeatureConvPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "onShapeChange", int32_t{1}, [&] {
        checkCounts(nbInputs, kNB_INPUTS, nbOutputs, kNB_OUTPUTS);
        nvinfer1::Dims ins[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            ins[i] = in[i].dims;
        }
        nvinfer1::Dims const outs[kNB_OUTPUTS] = {out[0].dims, out[1].dims};
        checkShapes(ins, outs);
        return int32_t{0};
    });
}

int32_t GacnFeatureConvPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return guarded(who(), "enqueue", int32_t{1}, [&] {
        nvinfer1::Dims ins[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            ins[i] = inputDesc[i].dims;
        }
        nvinfer1::Dims const outs[kNB_OUTPUTS] = {outputDesc[0].dims, outputDesc[1].dims};
        checkShapes(ins, outs);
        nvinfer1::Dims const& x = ins[kX];
        if (volume(x) == 0)
        {
            return int32_t{0};
        }
        GACN_PLUGIN_CHECK(workspace != nullptr, "no workspace for the partial sums");
        int32_t const n = toKernelInt(x.d[0], "N"), cin = toKernelInt(x.d[1], "cin");
        int32_t const h = toKernelInt(x.d[2], "H"), w = toKernelInt(x.d[3], "W");
        auto* sums = static_cast<float*>(workspace);
        auto const f = [&](int32_t i) { return static_cast<float const*>(inputs[i]); };
        long long const plane = static_cast<long long>(h) * w;
        int32_t status = gacn_feature_conv(f(kX), cin, f(kSCALE), cin, f(kWEIGHT), f(kBIAS), f(kBN),
            static_cast<float*>(outputs[0]), sums, n, h, w, cin * plane, kCOUT * plane, mAlgo, stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_feature_conv failed: ", kernelStatusString(status), " for x ",
            dimsToString(x), ", algo ", mAlgo);
        status = gacn_cse_scale(sums, n, static_cast<int32_t>(gacn_conv3x3_c16_partials(h, w)), plane, f(kFC1),
            f(kFC2), static_cast<float*>(outputs[1]), kCOUT, stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_cse_scale failed: ", kernelStatusString(status), " for x ",
            dimsToString(x));
        return int32_t{0};
    });
}

nvinfer1::PluginFieldCollection const* GacnFeatureConvPlugin::getFieldsToSerialize() noexcept
{
    return guarded(who(), "getFieldsToSerialize", static_cast<nvinfer1::PluginFieldCollection const*>(nullptr), [&] {
        mFields.clear();
        mFields.emplace_back(kALGO, &mAlgo, nvinfer1::PluginFieldType::kINT32, 1);
        mFieldsToSerialize.nbFields = static_cast<int32_t>(mFields.size());
        mFieldsToSerialize.fields = mFields.data();
        return static_cast<nvinfer1::PluginFieldCollection const*>(&mFieldsToSerialize);
    });
}

// ---------------------------------------------------------------------------------------------

GacnFeatureConvPluginCreator::GacnFeatureConvPluginCreator() noexcept
    : GacnPluginCreatorBase(kNAME, mFieldNames, 1)
    , mFieldNames{nvinfer1::PluginField(kALGO, nullptr, nvinfer1::PluginFieldType::kINT32, 1)}
{
}

nvinfer1::IPluginV3* GacnFeatureConvPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try // building the names may throw bad_alloc
    {
        std::string const layer = name != nullptr ? name : "";
        std::string const who = concat(kNAME, "[", layer, "]");
        return guarded(who, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
            int32_t algo = GACN_CONV_3XTF32; // default when the attribute is absent
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
            {
                nvinfer1::PluginField const& field = fc->fields[i];
                if (field.name != nullptr && std::strcmp(field.name, kALGO) == 0)
                {
                    algo = readIntField(field);
                    GACN_PLUGIN_CHECK(algo == GACN_CONV_FFMA || algo == GACN_CONV_3XTF32,
                        "field 'algo' must be 0 (FP32 FMA) or 1 (3xTF32), got ", algo);
                }
                else
                {
                    logMessage(Severity::kWARNING, concat(who, " createPlugin: ignoring unknown field '",
                                                       field.name != nullptr ? field.name : "", "'"));
                }
            }
            return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnFeatureConvPlugin>(layer, algo).release());
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
