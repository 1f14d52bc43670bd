/*
 * gacnActivityPlugin.h: TensorRT IPluginV3 "GacnActivity" version "1" (spec section 4).
 *
 *   inputs  fa [na,C,H,W]  (na = 1 broadcasts the reference frame, or na = N)
 *           fb [N, C,H,W]
 *           sa [na,C], sb [N,C] FP32, optional (4 inputs): per-channel scales of unscaled
 *           features (kernel ABI 3: the CSE scales, never multiplied into the feature maps)
 *   output  bm [N, C,H,W] = sigmoid(1000 * boxsum11x11(G(sa fa) - G(sb fb)))
 * fa, fb, bm FP32 or FP16, linear (NCHW), all three of the same type; FP32 arithmetic inside.
 * Fields: scaled (kINT32, 0 or 1, default 0): 1 for the 4-input form; out_half (kINT32, 0 or 1,
 * default 0): 1 writes bm as HALF whatever fa's type (the FP16 decision path's input straight from
 * FP32 features: no Cast layer). Runs gacn_activity() (2 inputs, bm of fa's type) or
 * gacn_activity_scaled().
 */
#ifndef GACN_ACTIVITY_PLUGIN_H
#define GACN_ACTIVITY_PLUGIN_H

#include "common/gacnPluginCommon.h"

#include <string>
#include <vector>

namespace gacn
{
namespace plugin
{

class GacnActivityPlugin final : public GacnPluginBase
{
public:
    GacnActivityPlugin(std::string layerName, int32_t scaled, int32_t outHalf);
    GacnActivityPlugin(GacnActivityPlugin const&) = default;
    ~GacnActivityPlugin() noexcept override = default;

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

    //! Throws PluginError unless fa, fb (sa, sb and bm, when given) fit together; unknown (-1) extents pass.
    static void checkShapes(nvinfer1::Dims const& fa, nvinfer1::Dims const& fb, nvinfer1::Dims const* bm,
        nvinfer1::Dims const* sa = nullptr, nvinfer1::Dims const* sb = nullptr);

    int32_t scaled() const noexcept
    {
        return mScaled;
    }

private:
    //! 2 inputs (fa, fb), or 4 with scaled = 1 (fa, fb, sa, sb: kernel ABI 3), and one output.
    void checkIo(int32_t nbInputs, int32_t nbOutputs) const;

    int32_t mScaled;  // 1: inputs fa, fb, sa, sb
    int32_t mOutHalf; // 1: bm is HALF
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldsToSerialize{};
};

class GacnActivityPluginCreator final : public GacnPluginCreatorBase
{
public:
    GacnActivityPluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginField mFieldNames[2];
};

} // namespace plugin
} // namespace gacn

#endif // GACN_ACTIVITY_PLUGIN_H
