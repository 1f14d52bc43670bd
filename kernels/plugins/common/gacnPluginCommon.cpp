/*
 * gacnPluginCommon.cpp: logging, checks and the shared plugin/creator bases (see the header).
 */
#include "gacnPluginCommon.h"

#include "gacn_kernels.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <limits>

namespace gacn
{
namespace plugin
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
} // namespace

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

nvinfer1::ILogger* getPluginLogger() noexcept
{
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    if (finder != nullptr)
    {
        try
        {
            if (nvinfer1::ILogger* logger = finder->findLogger())
            {
                return logger;
            }
        }
        catch (...)
        {
        }
    }
    // libnvinfer's global logger (the one registered by the first builder/runtime).
    return ::getLogger();
}

void logMessage(Severity severity, std::string const& message) noexcept
{
    nvinfer1::ILogger* logger = getPluginLogger();
    if (logger != nullptr)
    {
        logger->log(severity, message.c_str());
        return;
    }
    if (severity <= Severity::kWARNING)
    {
        std::fprintf(stderr, "[gacn_plugins] %s: %s\n", severity == Severity::kWARNING ? "WARNING" : "ERROR",
            message.c_str());
    }
}

void reportFailure(char const* who, char const* where, char const* what) noexcept
{
    try
    {
        logMessage(Severity::kERROR, concat(who, " ", where, ": ", what));
    }
    catch (...)
    {
        std::fprintf(stderr, "[gacn_plugins] ERROR: %s %s: %s\n", who, where, what); // out of memory
    }
}

void fail(std::string const& message)
{
    throw PluginError(message);
}

char const* dataTypeName(nvinfer1::DataType type) noexcept
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return "FLOAT";
    case nvinfer1::DataType::kHALF: return "HALF";
    case nvinfer1::DataType::kINT8: return "INT8";
    case nvinfer1::DataType::kINT32: return "INT32";
    case nvinfer1::DataType::kBOOL: return "BOOL";
    case nvinfer1::DataType::kUINT8: return "UINT8";
    case nvinfer1::DataType::kBF16: return "BF16";
    case nvinfer1::DataType::kINT64: return "INT64";
    default: return "other";
    }
}

bool isFloatOrHalf(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

int32_t kernelDtype(nvinfer1::DataType type)
{
    GACN_PLUGIN_CHECK(isFloatOrHalf(type), "unsupported data type ", dataTypeName(type), " (FLOAT or HALF only)");
    return type == nvinfer1::DataType::kFLOAT ? GACN_F32 : GACN_F16;
}

std::string dimsToString(nvinfer1::Dims const& dims)
{
    if (dims.nbDims < 0 || dims.nbDims > nvinfer1::Dims::MAX_DIMS)
    {
        return "[invalid rank " + std::to_string(dims.nbDims) + "]";
    }
    std::string s = "[";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        s += (i ? "," : "");
        s += known(dims.d[i]) ? std::to_string(dims.d[i]) : std::string("?");
    }
    return s + "]";
}

int64_t volume(nvinfer1::Dims const& dims) noexcept
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

int32_t toKernelInt(int64_t extent, char const* what)
{
    GACN_PLUGIN_CHECK(extent >= 0 && extent <= std::numeric_limits<int32_t>::max(), what, " = ", extent,
        " is out of the kernels' int range");
    return static_cast<int32_t>(extent);
}

std::string kernelStatusString(int32_t status)
{
    if (status == GACN_OK)
    {
        return "0 (ok)";
    }
    if (status == GACN_ERR_INVALID)
    {
        return concat(status, " (GACN_ERR_INVALID: arguments rejected by the kernel library)");
    }
    auto const err = static_cast<cudaError_t>(status);
    return concat(status, " (", cudaGetErrorName(err), ": ", cudaGetErrorString(err), ")");
}

int32_t readIntField(nvinfer1::PluginField const& field)
{
    char const* name = field.name != nullptr ? field.name : "(unnamed)";
    GACN_PLUGIN_CHECK(field.data != nullptr && field.length == 1, "field '", name,
        "' must hold exactly one integer (length is ", field.length, ")");
    switch (field.type)
    {
    case nvinfer1::PluginFieldType::kINT32: return *static_cast<int32_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT16: return *static_cast<int16_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT8: return *static_cast<int8_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT64:
    {
        int64_t const v = *static_cast<int64_t const*>(field.data);
        GACN_PLUGIN_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
            "field '", name, "' = ", v, " does not fit in int32");
        return static_cast<int32_t>(v);
    }
    default: break;
    }
    fail(concat("field '", name, "' must be an integer (kINT32), got PluginFieldType ",
        static_cast<int32_t>(field.type)));
}

// ---------------------------------------------------------------------------------------------
// GacnPluginBase

GacnPluginBase::GacnPluginBase(char const* pluginName, std::string layerName, std::string timingCacheID)
    : mPluginName(pluginName)
    , mLayerName(std::move(layerName))
    , mWho(concat(pluginName, "[", mLayerName, "]"))
    , mTimingCacheID(std::move(timingCacheID))
{
}

nvinfer1::IPluginCapability* GacnPluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    reportFailure(mWho.c_str(), "getCapabilityInterface", "unknown PluginCapabilityType");
    return nullptr;
}

char const* GacnPluginBase::getPluginName() const noexcept
{
    return mPluginName;
}

char const* GacnPluginBase::getPluginVersion() const noexcept
{
    return kGACN_PLUGIN_VERSION;
}

char const* GacnPluginBase::getPluginNamespace() const noexcept
{
    return kGACN_PLUGIN_NAMESPACE;
}

size_t GacnPluginBase::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0; // the launchers of gacn_kernels.h take no workspace
}

char const* GacnPluginBase::getTimingCacheID() noexcept
{
    return mTimingCacheID.c_str();
}

nvinfer1::IPluginV3* GacnPluginBase::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

void GacnPluginBase::checkCounts(
    int32_t nbInputs, int32_t expectedInputs, int32_t nbOutputs, int32_t expectedOutputs) const
{
    GACN_PLUGIN_CHECK(nbInputs == expectedInputs && nbOutputs == expectedOutputs, "expected ", expectedInputs,
        " inputs and ", expectedOutputs, " outputs, got ", nbInputs, " and ", nbOutputs);
}

// ---------------------------------------------------------------------------------------------
// GacnPluginCreatorBase

GacnPluginCreatorBase::GacnPluginCreatorBase(
    char const* pluginName, nvinfer1::PluginField const* fields, int32_t nbFields) noexcept
    : mPluginName(pluginName)
{
    mFieldNames.nbFields = nbFields;
    mFieldNames.fields = fields;
}

char const* GacnPluginCreatorBase::getPluginName() const noexcept
{
    return mPluginName;
}

char const* GacnPluginCreatorBase::getPluginVersion() const noexcept
{
    return kGACN_PLUGIN_VERSION;
}

char const* GacnPluginCreatorBase::getPluginNamespace() const noexcept
{
    return kGACN_PLUGIN_NAMESPACE;
}

nvinfer1::PluginFieldCollection const* GacnPluginCreatorBase::getFieldNames() noexcept
{
    return &mFieldNames;
}

} // namespace plugin
} // namespace gacn
