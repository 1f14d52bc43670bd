/*
 * gacnPluginCommon.h: what the three GACN TensorRT plugins share.
 *
 * - logging through the TensorRT logger (the ILoggerFinder that IPluginRegistry::loadLibrary hands
 *   to setLoggerFinder(), else libnvinfer's global getLogger()), messages prefixed with the plugin
 *   and layer name;
 * - PluginError + GACN_PLUGIN_CHECK for validation, and guarded(), which turns any exception into
 *   a logged error and a failure value at the noexcept TensorRT ABI boundary;
 * - plugin field parsing, data type and dimension helpers;
 * - GacnPluginBase: the IPluginV3 object implementing IPluginV3OneCore, IPluginV3OneBuild and
 *   IPluginV3OneRuntime (capability dispatch, name/version/namespace, attachToContext, workspace).
 *
 * Only APIs present in every TensorRT 10.x and 11.x NvInferRuntime.h are used (IPluginV3 and its
 * "One" capability interfaces, IPluginCreatorV3One, ILoggerFinder, getLogger()); no version macros.
 */
#ifndef GACN_PLUGIN_COMMON_H
#define GACN_PLUGIN_COMMON_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace gacn
{
namespace plugin
{

//! All GACN plugins: version "1", empty namespace (the ONNX parser's defaults for
//! plugin_version / plugin_namespace).
constexpr char const* kGACN_PLUGIN_VERSION = "1";
constexpr char const* kGACN_PLUGIN_NAMESPACE = "";

using Severity = nvinfer1::ILogger::Severity;

//! Remember the finder TensorRT gives the library (setLoggerFinder entry point); nullptr clears it.
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! The logger to use now: the finder's, else libnvinfer's global logger; may be nullptr.
nvinfer1::ILogger* getPluginLogger() noexcept;

//! Log through the TensorRT logger; without one, errors and warnings go to stderr.
void logMessage(Severity severity, std::string const& message) noexcept;

//! Thrown by validation; its message is logged verbatim by guarded().
class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

template <typename... Args>
std::string concat(Args&&... args)
{
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}

[[noreturn]] void fail(std::string const& message);

//! Validation: throws PluginError(concat(...)) when `cond` is false (message built only then).
#define GACN_PLUGIN_CHECK(cond, ...)                                                                                   \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ::gacn::plugin::fail(::gacn::plugin::concat(__VA_ARGS__));                                                 \
        }                                                                                                              \
    } while (0)

//! Run `fn` at the noexcept ABI boundary: any exception is logged as
//! "<who> <where>: <what>" at kERROR and `failValue` is returned instead.
//! Log "<who> <where>: <what>" at kERROR; never throws (drops the message if it cannot be built).
void reportFailure(char const* who, char const* where, char const* what) noexcept;

template <typename R, typename F>
R guarded(std::string const& who, char const* where, R failValue, F&& fn) noexcept
{
    try
    {
        return fn();
    }
    catch (std::exception const& e)
    {
        reportFailure(who.c_str(), where, e.what());
    }
    catch (...)
    {
        reportFailure(who.c_str(), where, "unknown exception");
    }
    return failValue;
}

//! "FLOAT", "HALF", ... for messages.
char const* dataTypeName(nvinfer1::DataType type) noexcept;

//! FP32 or FP16: the I/O types the kernels take for their main tensors.
bool isFloatOrHalf(nvinfer1::DataType type) noexcept;

//! GACN_F32 / GACN_F16 for the kernel ABI; throws for other types.
int32_t kernelDtype(nvinfer1::DataType type);

//! "[1,64,?,?]" (negative extents, TensorRT's wildcards, print as "?").
std::string dimsToString(nvinfer1::Dims const& dims);

//! A known extent (build-time dims use -1 for "not known yet").
inline bool known(int64_t extent) noexcept
{
    return extent >= 0;
}

//! True unless both extents are known and differ.
inline bool compatible(int64_t a, int64_t b) noexcept
{
    return !known(a) || !known(b) || a == b;
}

//! Number of elements of a concrete shape (0 if any extent is 0).
int64_t volume(nvinfer1::Dims const& dims) noexcept;

//! A dimension as the kernels' `int`; throws if out of range.
int32_t toKernelInt(int64_t extent, char const* what);

//! "0 (ok)", "-1 (GACN_ERR_INVALID: bad arguments)" or "2 (cudaErrorMemoryAllocation: out of memory)".
std::string kernelStatusString(int32_t status);

//! Value of a scalar integer plugin field (kINT8/16/32/64, length 1); throws otherwise.
int32_t readIntField(nvinfer1::PluginField const& field);

//! Base of the four plugins: one object is the IPluginV3 and all three capability interfaces,
//! as in TensorRT's own plugins. Derived classes implement the shape/type/format logic,
//! enqueue, clone and getFieldsToSerialize.
class GacnPluginBase : public nvinfer1::IPluginV3,
                       public nvinfer1::IPluginV3OneCore,
                       public nvinfer1::IPluginV3OneBuild,
                       public nvinfer1::IPluginV3OneRuntime
{
public:
    ~GacnPluginBase() noexcept override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild: the kernels need no scratch memory.
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime: no per-context resources, so attaching is cloning.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

    //! "GacnActivity[layer]" for messages.
    std::string const& who() const noexcept
    {
        return mWho;
    }

protected:
    //! `timingCacheID`: the creation state (field values) that, with the I/O shapes and formats
    //! TensorRT adds itself, identifies a timing; see IPluginV3OneBuild::getTimingCacheID.
    GacnPluginBase(char const* pluginName, std::string layerName, std::string timingCacheID);
    GacnPluginBase(GacnPluginBase const&) = default;
    GacnPluginBase& operator=(GacnPluginBase const&) = delete;

    //! Common argument checks of configurePlugin / onShapeChange / enqueue.
    void checkCounts(int32_t nbInputs, int32_t expectedInputs, int32_t nbOutputs, int32_t expectedOutputs) const;

private:
    char const* mPluginName;
    std::string mLayerName;
    std::string mWho;
    std::string mTimingCacheID;
};

//! Base of the three creators: name, version, namespace and the field list.
class GacnPluginCreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;

protected:
    //! `fields`: the attributes the ONNX parser should pass (name, type, length; data nullptr).
    GacnPluginCreatorBase(char const* pluginName, nvinfer1::PluginField const* fields, int32_t nbFields) noexcept;

private:
    char const* mPluginName;
    nvinfer1::PluginFieldCollection mFieldNames;
};

} // namespace plugin
} // namespace gacn

#endif // GACN_PLUGIN_COMMON_H
