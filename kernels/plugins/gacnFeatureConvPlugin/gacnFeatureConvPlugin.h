/*
 * gacnFeatureConvPlugin.h: TensorRT IPluginV3 "GacnFeatureConv" version "1" (spec sections 2-3: a
 * feature ConvBlock with its CSE scale, on an unscaled input; kernel ABI 3).
 *
 *   inputs  x        [N,cin,H,W]  FP32, linear: the UNSCALED outputs u of the earlier blocks
 *           weight   [16,cin,3,3] FP32 (ConvBlock conv, positive BatchNorm scales folded in)
 *           bias     [16]         FP32
 *           bn       [2,16]       FP32 (remaining BatchNorm scale, shift)
 *           fc1      [2,16]       FP32 (CSE Linear 16 -> 2)
 *           fc2      [16,2]       FP32 (CSE Linear 2 -> 16)
 *           in_scale [N,cin]      FP32: the CSE scales of x's channels (ones for the luma)
 *   outputs u        [N,16,H,W]   FP32: BN(ReLU(conv3x3(in_scale * x) + bias)), unscaled
 *           s        [N,16]       FP32: this block's CSE scale, sigmoid(fc2 relu(fc1 mean(u)))
 * The scale is folded into the weights (gacn_feature_conv), never multiplied into x; the mean is
 * formed from the conv's per-block partial sums in float64 (gacn_cse_scale, workspace
 * N x blocks x 16 floats). Field: algo (kINT32: 0 FP32 FMA, 1 3xTF32 tensor cores, default 1;
 * below sm_80 or for cin < 8 the FMA kernel runs either way).
 */
#ifndef GACN_FEATURE_CONV_PLUGIN_H
#define GACN_FEATURE_CONV_PLUGIN_H

#include "common/gacnPluginCommon.h"

#include <string>
#include <vector>

namespace gacn
{
namespace plugin
{

class GacnFeatureConvPlugin final : public GacnPluginBase
{
public:
    GacnFeatureConvPlugin(std::string layerName, int32_t algo);
    GacnFeatureConvPlugin(GacnFeatureConvPlugin const&) = default;
    ~GacnFeatureConvPlugin() noexcept override = default;

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
    //! The partial sums: N x blocks(H, W) x 16 floats at the profile's maximum.
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    int32_t algo() const noexcept
    {
        return mAlgo;
    }

    //! Throws PluginError unless the seven inputs (and the outputs, when given) fit together;
    //! unknown (-1) extents pass. `in` holds nbInputs dims, `out` 2 or nullptr.
    static void checkShapes(nvinfer1::Dims const* in, nvinfer1::Dims const* out);

private:
    int32_t mAlgo;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldsToSerialize{};
};

class GacnFeatureConvPluginCreator final : public GacnPluginCreatorBase
{
public:
    GacnFeatureConvPluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginField mFieldNames[1];
};

} // namespace plugin
} // namespace gacn

#endif // GACN_FEATURE_CONV_PLUGIN_H
