/*
 * gacnActivityPlugin.cpp: see gacnActivityPlugin.h.
 */
#include "gacnActivityPlugin.h"

#include "gacn_kernels.h"

#include <cstring>
#include <memory>

namespace gacn
{
namespace plugin
{
namespace
{
constexpr char const* kNAME = "GacnActivity";
constexpr char const* kSCALED = "scaled";
constexpr char const* kOUT_HALF = "out_half";

std::string cacheId(int32_t scaled, int32_t outHalf)
{
    return concat("gacn1", scaled ? ";scaled=1" : "", outHalf ? ";out_half=1" : "");
}
constexpr int32_t kFA = 0, kFB = 1, kSA = 2, kSB = 3; // positions in inOut; bm follows the inputs
constexpr int32_t kNB_OUTPUTS = 1;

} // namespace

GacnActivityPlugin::GacnActivityPlugin(std::string layerName, int32_t scaled, int32_t outHalf)
    : GacnPluginBase(kNAME, std::move(layerName), cacheId(scaled, outHalf))
    , mScaled(scaled ? 1 : 0)
    , mOutHalf(outHalf ? 1 : 0)
{
}

void GacnActivityPlugin::checkIo(int32_t nbInputs, int32_t nbOutputs) const
{
    GACN_PLUGIN_CHECK(nbInputs == (mScaled ? 4 : 2) && nbOutputs == kNB_OUTPUTS, "expected ",
        mScaled ? "4 inputs (fa, fb, sa, sb: scaled = 1)" : "2 inputs (fa, fb; scaled = 0)", " and 1 output, got ",
        nbInputs, " and ", nbOutputs);
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
        checkIo(nbInputs, nbOutputs);
        GACN_PLUGIN_CHECK(isFloatOrHalf(inputTypes[kFA]) && inputTypes[kFA] == inputTypes[kFB],
            "fa and fb must both be FLOAT or both HALF, got ", dataTypeName(inputTypes[kFA]), " and ",
            dataTypeName(inputTypes[kFB]));
        GACN_PLUGIN_CHECK(nbInputs == 2
                || (inputTypes[kSA] == nvinfer1::DataType::kFLOAT && inputTypes[kSB] == nvinfer1::DataType::kFLOAT),
            "the scales sa and sb must be FLOAT");
        outputTypes[0] = mOutHalf ? nvinfer1::DataType::kHALF : inputTypes[kFB];
        return int32_t{0};
    });
}

int32_t GacnActivityPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(who(), "getOutputShapes", int32_t{1}, [&] {
        checkIo(nbInputs, nbOutputs);
        GACN_PLUGIN_CHECK(nbShapeInputs == 0, "takes no shape inputs, got ", nbShapeInputs);
        GACN_PLUGIN_CHECK(inputs[kFA].nbDims == 4 && inputs[kFB].nbDims == 4,
            "fa and fb must be 4-D [N,C,H,W], got ranks ", inputs[kFA].nbDims, " and ", inputs[kFB].nbDims);
        GACN_PLUGIN_CHECK(nbInputs == 2 || (inputs[kSA].nbDims == 2 && inputs[kSB].nbDims == 2),
            "the scales sa and sb must be 2-D [na,C] and [N,C], got ranks ", inputs[kSA].nbDims, " and ",
            nbInputs == 4 ? inputs[kSB].nbDims : 0);
        outputs[0] = inputs[kFB]; // bm has the dims of fb
        return int32_t{0};
    });
}

bool GacnActivityPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != (mScaled ? 4 : 2) || nbOutputs != kNB_OUTPUTS || pos < 0
        || pos >= nbInputs + kNB_OUTPUTS)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == nbInputs) // bm: fa's type, or HALF with out_half = 1
    {
        return d.type == (mOutHalf ? nvinfer1::DataType::kHALF : inOut[kFA].desc.type);
    }
    if (pos == kSA || pos == kSB)
    {
        return d.type == nvinfer1::DataType::kFLOAT;
    }
    // fa decides FP32 or FP16; fb follows it.
    return pos == kFA ? isFloatOrHalf(d.type) : d.type == inOut[kFA].desc.type;
}

void GacnActivityPlugin::checkShapes(nvinfer1::Dims const& fa, nvinfer1::Dims const& fb, nvinfer1::Dims const* bm,
    nvinfer1::Dims const* sa, nvinfer1::Dims const* sb)
{
    if (sa != nullptr && sb != nullptr)
    {
        GACN_PLUGIN_CHECK(sa->nbDims == 2 && sb->nbDims == 2 && fa.nbDims == 4 && fb.nbDims == 4
                && compatible(sa->d[0], fa.d[0]) && compatible(sa->d[1], fa.d[1]) && compatible(sb->d[0], fb.d[0])
                && compatible(sb->d[1], fb.d[1]),
            "the scales must be sa [na,C] and sb [N,C] for fa ", dimsToString(fa), " and fb ", dimsToString(fb),
            ", got sa ", dimsToString(*sa), " and sb ", dimsToString(*sb));
    }
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
        checkIo(nbInputs, nbOutputs);
        bool const scaled = nbInputs == 4;
        checkShapes(in[kFA].desc.dims, in[kFB].desc.dims, &out[0].desc.dims, scaled ? &in[kSA].desc.dims : nullptr,
            scaled ? &in[kSB].desc.dims : nullptr);
        return int32_t{0};
    });
}

int32_t GacnActivityPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(who(), "onShapeChange", int32_t{1}, [&] {
        checkIo(nbInputs, nbOutputs);
        bool const scaled = nbInputs == 4;
        checkShapes(in[kFA].dims, in[kFB].dims, &out[0].dims, scaled ? &in[kSA].dims : nullptr,
            scaled ? &in[kSB].dims : nullptr);
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
        bool const scaled = mScaled != 0;  // the 4-input form: sa, sb (kernel ABI 3)
        checkShapes(fa, fb, &outputDesc[0].dims, scaled ? &inputDesc[kSA].dims : nullptr,
            scaled ? &inputDesc[kSB].dims : nullptr);
        if (volume(fb) == 0)
        {
            return int32_t{0};
        }
        int32_t const dtype = kernelDtype(inputDesc[kFB].type);
        int32_t const outDtype = kernelDtype(outputDesc[0].type); // HALF with out_half = 1: no Cast layer after
        int32_t const status = scaled || outDtype != dtype
            ? gacn_activity_scaled(inputs[kFA], inputs[kFB], scaled ? static_cast<float const*>(inputs[kSA]) : nullptr,
                scaled ? static_cast<float const*>(inputs[kSB]) : nullptr, outputs[0], toKernelInt(fb.d[0], "N"),
                toKernelInt(fa.d[0], "na"), toKernelInt(fb.d[1], "C"), toKernelInt(fb.d[2], "H"),
                toKernelInt(fb.d[3], "W"), dtype, GACN_NCHW, outDtype, GACN_NCHW, stream)
            : gacn_activity(inputs[kFA], inputs[kFB], outputs[0], toKernelInt(fb.d[0], "N"),
                toKernelInt(fa.d[0], "na"), toKernelInt(fb.d[1], "C"), toKernelInt(fb.d[2], "H"),
                toKernelInt(fb.d[3], "W"), dtype, GACN_NCHW, stream);
        GACN_PLUGIN_CHECK(status == GACN_OK, "gacn_activity failed: ", kernelStatusString(status), " for fa ",
            dimsToString(fa), ", fb ", dimsToString(fb), " (", dataTypeName(inputDesc[kFB].type), ")");
        return int32_t{0};
    });
}

nvinfer1::PluginFieldCollection const* GacnActivityPlugin::getFieldsToSerialize() noexcept
{
    return guarded(who(), "getFieldsToSerialize", static_cast<nvinfer1::PluginFieldCollection const*>(nullptr), [&] {
        mFields.clear();
        mFields.emplace_back(kSCALED, &mScaled, nvinfer1::PluginFieldType::kINT32, 1);
        mFields.emplace_back(kOUT_HALF, &mOutHalf, nvinfer1::PluginFieldType::kINT32, 1);
        mFieldsToSerialize.nbFields = static_cast<int32_t>(mFields.size());
        mFieldsToSerialize.fields = mFields.data();
        return static_cast<nvinfer1::PluginFieldCollection const*>(&mFieldsToSerialize);
    });
}

// ---------------------------------------------------------------------------------------------

GacnActivityPluginCreator::GacnActivityPluginCreator() noexcept
    : GacnPluginCreatorBase(kNAME, mFieldNames, 2)
    , mFieldNames{nvinfer1::PluginField(kSCALED, nullptr, nvinfer1::PluginFieldType::kINT32, 1),
          nvinfer1::PluginField(kOUT_HALF, nullptr, nvinfer1::PluginFieldType::kINT32, 1)}
{
}

nvinfer1::IPluginV3* GacnActivityPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try // building the names may throw bad_alloc
    {
        std::string const layer = name != nullptr ? name : "";
        std::string const who = concat(kNAME, "[", layer, "]");
        return guarded(who, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&] {
            int32_t scaled = 0;  // default when the attribute is absent: the 2-input form
            int32_t outHalf = 0; // default: bm has fa's type
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
            {
                nvinfer1::PluginField const& f = fc->fields[i];
                if (f.name != nullptr && std::strcmp(f.name, kSCALED) == 0)
                {
                    scaled = readIntField(f);
                    GACN_PLUGIN_CHECK(scaled == 0 || scaled == 1, "field 'scaled' must be 0 or 1, got ", scaled);
                }
                else if (f.name != nullptr && std::strcmp(f.name, kOUT_HALF) == 0)
                {
                    outHalf = readIntField(f);
                    GACN_PLUGIN_CHECK(outHalf == 0 || outHalf == 1, "field 'out_half' must be 0 or 1, got ", outHalf);
                }
                else
                {
                    logMessage(Severity::kWARNING,
                        concat(who, " createPlugin: ignoring unknown field '", f.name != nullptr ? f.name : "", "'"));
                }
            }
            return static_cast<nvinfer1::IPluginV3*>(std::make_unique<GacnActivityPlugin>(layer, scaled, outHalf).release());
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
