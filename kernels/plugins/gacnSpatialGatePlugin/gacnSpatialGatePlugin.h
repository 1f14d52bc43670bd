/*
 * gacnSpatialGatePlugin.h: TensorRT IPluginV3 "GacnSpatialGate" version "1" (spec sections 2 and 5:
 * the SSE layer, with the preceding ConvBlock's ReLU and BatchNorm fused in).
 *
 *   inputs  x      [N,C,H,W]  FP32 or FP16, linear
 *           weight [C,7,7]    FP32 (the SSE's C->1 7x7 convolution; an ONNX initializer)
 *           bn     [2,C]      FP32 (per-channel scale and shift; an ONNX initializer)
 *   output  y      [N,C,H,W]  type of x
 *   u = relu ? max(x,0) : x;  u = u*bn[0,c] + bn[1,c];  y = u * sigmoid(conv7x7(u; weight))
 * Field: relu (kINT32, 0 or 1, default 0), serialised with the engine.
 * Runs gacn_spatial_gate() from kernels/include/gacn_kernels.h.
 */
#ifndef GACN_SPATIAL_GATE_PLUGIN_H
#define GACN_SPATIAL_GATE_PLUGIN_H

#include "common/gacnPluginCommon.h"

#include <string>
#include <vector>

namespace gacn
{
namespace plugin
{

class GacnSpatialGatePlugin final : public GacnPluginBase
{
public:
    GacnSpatialGatePlugin(std::string layerName, int32_t relu);
    GacnSpatialGatePlugin(GacnSpatialGatePlugin const&) = default;
    ~GacnSpatialGatePlugin() noexcept override = default;

    // IPluginV3
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    int32_t relu() const noexcept
    {
        return mRelu;
    }

    //! Throws PluginError unless x, weight, bn (and y, when given) fit together; unknown (-1) extents pass.
    static void checkShapes(
        nvinfer1::Dims const& x, nvinfer1::Dims const& weight, nvinfer1::Dims const& bn, nvinfer1::Dims const* y);

private:
    int32_t mRelu;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldsToSerialize{};
};

class GacnSpatialGatePluginCreator final : public GacnPluginCreatorBase
{
public:
    GacnSpatialGatePluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginField mFieldNames[1];
};

} // namespace plugin
} // namespace gacn

#endif // GACN_SPATIAL_GATE_PLUGIN_H
