/*
 * gacnBoundaryRefinePlugin.h: TensorRT IPluginV3 "GacnBoundaryRefine" version "1" (spec section 5,
 * last line, and section 6: the decision step).
 *
 *   inputs  d4 [N, 1,H,W]  pre-sigmoid output of the last decision layer, FP32 or FP16
 *           ya [na,1,H,W]  luma of A, FP32 (na = 1 broadcasts the reference frame, or na = N)
 *           yb [N, 1,H,W]  luma of B, FP32
 *   outputs d  [N, 1,H,W]  FP32  D = sigmoid(1000 d4)
 *           m  [N, 1,H,W]  FP32  M: threshold smoothing + boundary guided filter
 * Both outputs are FP32 whatever d4's type (the mask feeds the blend). H, W >= 8.
 * No fields. Runs gacn_boundary_refine() from kernels/include/gacn_kernels.h.
 */
#ifndef GACN_BOUNDARY_REFINE_PLUGIN_H
#define GACN_BOUNDARY_REFINE_PLUGIN_H

#include "common/gacnPluginCommon.h"

#include <string>

namespace gacn
{
namespace plugin
{

class GacnBoundaryRefinePlugin final : public GacnPluginBase
{
public:
    explicit GacnBoundaryRefinePlugin(std::string layerName);
    GacnBoundaryRefinePlugin(GacnBoundaryRefinePlugin const&) = default;
    ~GacnBoundaryRefinePlugin() noexcept override = default;

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

    //! The guided filter's window (2r+1 = 7) must fit: H and W of at least this.
    static constexpr int64_t kMIN_EXTENT = 8;

    //! Throws PluginError unless d4, ya, yb (and d, m, when given) fit together; unknown (-1) extents pass.
    static void checkShapes(nvinfer1::Dims const& d4, nvinfer1::Dims const& ya, nvinfer1::Dims const& yb,
        nvinfer1::Dims const* d, nvinfer1::Dims const* m);

private:
    nvinfer1::PluginFieldCollection mFieldsToSerialize{};
};

class GacnBoundaryRefinePluginCreator final : public GacnPluginCreatorBase
{
public:
    GacnBoundaryRefinePluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace plugin
} // namespace gacn

#endif // GACN_BOUNDARY_REFINE_PLUGIN_H
