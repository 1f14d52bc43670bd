/*
 * registration.cpp: the one registration path of libgacn_plugins.so.
 *
 * The library is a TensorRT "plugin shared library": it exports the two C entry points that
 * IPluginRegistry::loadLibrary() looks up (Python: registry.load_library(path); trtexec:
 * --dynamicPlugins=path), and nothing registers itself at load time (no REGISTER_TENSORRT_PLUGIN,
 * so a plain dlopen registers nothing):
 *   getCreators(nbCreators)  the four IPluginCreatorV3One creators (namespace "", version "1");
 *   setLoggerFinder(finder)  where TensorRT's logger is found for the plugins' messages.
 * The version script gacn_plugins.map exports exactly these two symbols.
 */
#include "common/gacnPluginCommon.h"
#include "gacnActivityPlugin/gacnActivityPlugin.h"
#include "gacnBoundaryRefinePlugin/gacnBoundaryRefinePlugin.h"
#include "gacnFeatureConvPlugin/gacnFeatureConvPlugin.h"
#include "gacnSpatialGatePlugin/gacnSpatialGatePlugin.h"

#if defined(_WIN32)
#define GACN_PLUGINS_EXPORT extern "C" __declspec(dllexport)
#else
#define GACN_PLUGINS_EXPORT extern "C" __attribute__((visibility("default")))
#endif

GACN_PLUGINS_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
GACN_PLUGINS_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    gacn::plugin::setPluginLoggerFinder(finder);
}

nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept
{
    // Creators live as long as the library (TensorRT never deletes them); their constructors
    // do not throw.
    static gacn::plugin::GacnActivityPluginCreator activity;
    static gacn::plugin::GacnSpatialGatePluginCreator spatialGate;
    static gacn::plugin::GacnBoundaryRefinePluginCreator boundaryRefine;
    static gacn::plugin::GacnFeatureConvPluginCreator featureConv;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&activity, &spatialGate, &boundaryRefine, &featureConv};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
