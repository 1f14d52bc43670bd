/*
 * plugin_harness.cpp: host-only behaviour check of the TensorRT plugins in kernels/plugins, run by
 * tests/test_plugins_compile.py when TensorRT headers are available (GACN_TRT_INCLUDE).
 *
 * Needs no GPU and no libnvinfer: it links the plugin sources with
 *   - stub kernel launchers (below) that record their arguments instead of computing,
 *   - a stub ::getLogger() (libnvinfer's global logger) that records messages,
 *   - fake IDimensionExpr / IExprBuilder implementations for getOutputShapes,
 * and drives the plugins through the same entry points TensorRT uses: getCreators(),
 * IPluginCreatorV3One::createPlugin(), getCapabilityInterface() and the V3One interfaces.
 * Exit status 0 when every check passes; failures are printed.
 */
#include "NvInferRuntime.h"
#include "gacn_kernels.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;
extern "C" void setLoggerFinder(ILoggerFinder* finder) noexcept;

// ---- recording logger -------------------------------------------------------------------------
namespace
{
struct RecordingLogger : ILogger
{
    std::vector<std::pair<Severity, std::string>> messages;
    void log(Severity severity, char const* msg) noexcept override
    {
        messages.emplace_back(severity, msg);
        if (std::getenv("GACN_HARNESS_VERBOSE") != nullptr)
        {
            std::printf("  [log %d] %s\n", static_cast<int>(severity), msg);
        }
    }
    bool sawError(char const* needle) const
    {
        for (auto const& m : messages)
        {
            if (m.first <= Severity::kERROR && m.second.find(needle) != std::string::npos)
            {
                return true;
            }
        }
        return false;
    }
};
RecordingLogger gGlobalLogger;
} // namespace

extern "C" ILogger* getLogger() noexcept
{
    return &gGlobalLogger;
}

// ---- recording kernel stubs -------------------------------------------------------------------
namespace
{
struct Call
{
    int op = 0, n = 0, na = 0, c = 0, h = 0, w = 0, dtype = -1, layout = -1, relu = -1;
    void const* in0 = nullptr;
    void* out0 = nullptr;
    void* out1 = nullptr;
    void* stream = nullptr;
    // ABI 3 launchers
    int algo = -1, blocks = -1, out_dtype = -1, out_layout = -1;
    long long count = -1, xs = -1, ys = -1, stride = -1;
    void const* scale = nullptr;
    void const* scale_b = nullptr;
};
Call gCall;
std::vector<Call> gCalls; // every launch, in order (GacnFeatureConv launches two kernels)
} // namespace

extern "C" size_t gacn_conv3x3_c16_partials(int h, int w)
{
    return h < 1 || w < 1 ? 0 : static_cast<size_t>((w + 63) / 64) * static_cast<size_t>((h + 15) / 16);
}

extern "C" int gacn_activity_scaled(void const* fa, void const*, float const* sa, float const* sb, void* bm, int n,
    int na, int c, int h, int w, int in_dtype, int in_layout, int out_dtype, int out_layout, gacn_stream_t s)
{
    gCall = Call{4, n, na, c, h, w, in_dtype, in_layout, -1, fa, bm, nullptr, s};
    gCall.out_dtype = out_dtype, gCall.out_layout = out_layout, gCall.scale = sa, gCall.scale_b = sb;
    gCalls.push_back(gCall);
    return GACN_OK;
}

extern "C" int gacn_feature_conv(float const* x, int cin, float const* in_scale, long long scale_batch_stride,
    float const*, float const*, float const*, float* y, float* partial_sums, int n, int h, int w,
    long long x_batch_stride, long long y_batch_stride, int algo, gacn_stream_t s)
{
    gCall = Call{5, n, 0, cin, h, w, GACN_F32, GACN_NCHW, -1, x, y, partial_sums, s};
    gCall.algo = algo, gCall.scale = in_scale, gCall.stride = scale_batch_stride, gCall.xs = x_batch_stride,
    gCall.ys = y_batch_stride;
    gCalls.push_back(gCall);
    return GACN_OK;
}

extern "C" int gacn_cse_scale(float const* partial_sums, int n, int blocks, long long count, float const*,
    float const*, float* s, long long s_batch_stride, gacn_stream_t stream)
{
    gCall = Call{6, n, 0, 16, 0, 0, GACN_F32, -1, -1, partial_sums, s, nullptr, stream};
    gCall.blocks = blocks, gCall.count = count, gCall.stride = s_batch_stride;
    gCalls.push_back(gCall);
    return blocks == 0 ? GACN_ERR_INVALID : GACN_OK;
}

extern "C" int gacn_activity(
    void const* fa, void const*, void* bm, int n, int na, int c, int h, int w, int dtype, int layout, gacn_stream_t s)
{
    gCall = Call{1, n, na, c, h, w, dtype, layout, -1, fa, bm, nullptr, s};
    return GACN_OK;
}

extern "C" int gacn_spatial_gate(void const* x, float const*, float const*, int relu, void* y, int n, int c, int h,
    int w, int dtype, int layout, gacn_stream_t s)
{
    gCall = Call{2, n, 0, c, h, w, dtype, layout, relu, x, y, nullptr, s};
    return c == 3 ? 1 /* cudaErrorInvalidValue */ : GACN_OK;
}

extern "C" int gacn_boundary_refine(void const* d4, float const*, float const*, float* d, float* m, int n, int na,
    int h, int w, int dtype, gacn_stream_t s)
{
    gCall = Call{3, n, na, 1, h, w, dtype, -1, -1, d4, d, m, s};
    return GACN_OK;
}

// ---- fake dimension expressions ---------------------------------------------------------------
namespace
{
struct FakeDimImpl : apiv::VDimensionExpr
{
    int64_t value;
    explicit FakeDimImpl(int64_t v)
        : value(v)
    {
    }
    bool isConstant() const override
    {
        return value >= 0;
    }
    int64_t getConstantValue() const override
    {
        return value;
    }
    bool isSizeTensor() const override
    {
        return false;
    }
};

struct FakeDim : IDimensionExpr
{
    FakeDimImpl impl;
    explicit FakeDim(int64_t v)
        : impl(v)
    {
        mImpl = &impl;
    }
};

struct FakeExprBuilder : IExprBuilder
{
    FakeExprBuilder()
    {
        mImpl = nullptr; // the plugins build no new expressions
    }
};

struct ExprPool
{
    std::vector<std::unique_ptr<FakeDim>> dims;
    DimsExprs make(std::vector<int64_t> const& values) // -1: a runtime dimension
    {
        DimsExprs e{};
        e.nbDims = static_cast<int32_t>(values.size());
        for (size_t i = 0; i < values.size(); ++i)
        {
            dims.push_back(std::make_unique<FakeDim>(values[i]));
            e.d[i] = dims.back().get();
        }
        return e;
    }
};

Dims dims(std::vector<int64_t> const& values)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        d.d[i] = values[i];
    }
    return d;
}

PluginTensorDesc desc(std::vector<int64_t> const& shape, DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    PluginTensorDesc p{};
    p.dims = dims(shape);
    p.type = type;
    p.format = format;
    p.scale = 1.0F;
    return p;
}

DynamicPluginTensorDesc dyn(std::vector<int64_t> const& shape, DataType type, std::vector<int64_t> const& lo = {},
    std::vector<int64_t> const& hi = {})
{
    DynamicPluginTensorDesc d{};
    d.desc = desc(shape, type);
    d.min = dims(lo.empty() ? shape : lo);
    d.max = dims(hi.empty() ? shape : hi);
    d.opt = d.max;
    return d;
}

int gFailures = 0;
int gChecks = 0;
void check(bool ok, std::string const& what)
{
    ++gChecks;
    if (!ok)
    {
        ++gFailures;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

struct Plugin
{
    IPluginV3* v3 = nullptr;
    IPluginV3OneCore* core = nullptr;
    IPluginV3OneBuild* build = nullptr;
    IPluginV3OneRuntime* runtime = nullptr;
    explicit Plugin(IPluginV3* p)
        : v3(p)
    {
        if (p != nullptr)
        {
            core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
            build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
            runtime = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        }
    }
    ~Plugin()
    {
        delete v3;
    }
    Plugin(Plugin const&) = delete;
    Plugin& operator=(Plugin const&) = delete;
};

//! Count the complete type/format combinations accepted, asking position by position as TensorRT does.
int countCombinations(IPluginV3OneBuild* build, int nbIn, int nbOut)
{
    DataType const types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kINT32};
    TensorFormat const formats[] = {TensorFormat::kLINEAR, TensorFormat::kCHW32, TensorFormat::kHWC8};
    int const total = nbIn + nbOut;
    std::vector<DynamicPluginTensorDesc> io(total);
    int accepted = 0;
    std::vector<int> choice(total, 0);
    int const options = 4 * 3;
    // Depth-first over positions; prune as soon as a position is rejected.
    int pos = 0;
    while (pos >= 0)
    {
        if (choice[pos] == options)
        {
            choice[pos] = 0;
            --pos;
            if (pos >= 0)
            {
                ++choice[pos];
            }
            continue;
        }
        io[pos] = dyn({1, 1, 8, 8}, types[choice[pos] / 3]);
        io[pos].desc.format = formats[choice[pos] % 3];
        if (build->supportsFormatCombination(pos, io.data(), nbIn, nbOut))
        {
            if (pos == total - 1)
            {
                ++accepted;
                ++choice[pos];
            }
            else
            {
                ++pos;
            }
        }
        else
        {
            ++choice[pos];
        }
    }
    return accepted;
}

IPluginCreatorV3One* findCreator(char const* name)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
        {
            return c;
        }
    }
    return nullptr;
}
} // namespace

int main()
{
    // ---- registration entry point ----
    int32_t nb = -1;
    IPluginCreatorInterface* const* creators = getCreators(nb);
    check(nb == 4 && creators != nullptr, "getCreators returns 4 creators");
    char const* const names[] = {"GacnActivity", "GacnSpatialGate", "GacnBoundaryRefine", "GacnFeatureConv"};
    for (int32_t i = 0; i < nb; ++i)
    {
        check(std::strcmp(creators[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0,
            "creator kind is PLUGIN CREATOR_V3ONE");
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        check(std::strcmp(c->getPluginName(), names[i]) == 0, std::string("creator name ") + names[i]);
        check(std::strcmp(c->getPluginVersion(), "1") == 0 && std::strcmp(c->getPluginNamespace(), "") == 0,
            "version 1, empty namespace");
    }
    IPluginCreatorV3One* actC = findCreator("GacnActivity");
    IPluginCreatorV3One* gateC = findCreator("GacnSpatialGate");
    IPluginCreatorV3One* refC = findCreator("GacnBoundaryRefine");
    IPluginCreatorV3One* convC = findCreator("GacnFeatureConv");
    check(refC->getFieldNames()->nbFields == 0, "GacnBoundaryRefine has no fields");
    PluginFieldCollection const* af = actC->getFieldNames();
    check(af->nbFields == 2 && std::strcmp(af->fields[0].name, "scaled") == 0
            && af->fields[0].type == PluginFieldType::kINT32 && std::strcmp(af->fields[1].name, "out_half") == 0
            && af->fields[1].type == PluginFieldType::kINT32,
        "GacnActivity fields scaled, out_half kINT32");
    PluginFieldCollection const* cf = convC->getFieldNames();
    check(cf->nbFields == 1 && std::strcmp(cf->fields[0].name, "algo") == 0
            && cf->fields[0].type == PluginFieldType::kINT32,
        "GacnFeatureConv field algo kINT32");
    PluginFieldCollection const* gf = gateC->getFieldNames();
    check(gf->nbFields == 1 && std::strcmp(gf->fields[0].name, "relu") == 0
            && gf->fields[0].type == PluginFieldType::kINT32,
        "GacnSpatialGate field relu kINT32");

    // ---- creation, fields, serialisation ----
    int32_t const one = 1, two = 2;
    int64_t const one64 = 1;
    PluginField reluField("relu", &one, PluginFieldType::kINT32, 1);
    PluginFieldCollection fc{1, &reluField};
    Plugin gate(gateC->createPlugin("sse5", &fc, TensorRTPhase::kBUILD));
    check(gate.v3 && gate.core && gate.build && gate.runtime, "GacnSpatialGate created with all capabilities");
    check(std::strcmp(gate.core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0
            && std::strcmp(gate.build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0
            && std::strcmp(gate.runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
        "capability interfaces");
    check(std::strcmp(gate.core->getPluginName(), "GacnSpatialGate") == 0, "core name");
    PluginFieldCollection const* ser = gate.runtime->getFieldsToSerialize();
    check(ser && ser->nbFields == 1 && std::strcmp(ser->fields[0].name, "relu") == 0
            && ser->fields[0].type == PluginFieldType::kINT32 && *static_cast<int32_t const*>(ser->fields[0].data) == 1,
        "relu serialised");
    Plugin gate2(gateC->createPlugin("sse5", ser, TensorRTPhase::kRUNTIME));
    check(gate2.v3 != nullptr && std::string(gate2.build->getTimingCacheID()) == "gacn1;relu=1",
        "deserialised relu=1");
    Plugin gate0(gateC->createPlugin("sse4", nullptr, TensorRTPhase::kBUILD));
    check(gate0.v3 != nullptr && std::string(gate0.build->getTimingCacheID()) == "gacn1;relu=0", "relu default 0");
    PluginField relu64("relu", &one64, PluginFieldType::kINT64, 1);
    PluginFieldCollection fc64{1, &relu64};
    Plugin gate64(gateC->createPlugin("x", &fc64, TensorRTPhase::kBUILD));
    check(gate64.v3 != nullptr, "relu as kINT64 accepted");
    PluginField reluBad("relu", &two, PluginFieldType::kINT32, 1);
    PluginFieldCollection fcBad{1, &reluBad};
    gGlobalLogger.messages.clear();
    check(gateC->createPlugin("bad", &fcBad, TensorRTPhase::kBUILD) == nullptr
            && gGlobalLogger.sawError("GacnSpatialGate[bad] createPlugin: field 'relu' must be 0 or 1"),
        "relu=2 rejected with a clear error");

    Plugin act(actC->createPlugin("activity", nullptr, TensorRTPhase::kBUILD));
    Plugin ref(refC->createPlugin("refine", nullptr, TensorRTPhase::kBUILD));
    check(act.v3 && ref.v3, "GacnActivity and GacnBoundaryRefine created");
    {
        PluginFieldCollection const* as = act.runtime->getFieldsToSerialize();
        check(as && as->nbFields == 2 && std::strcmp(as->fields[0].name, "scaled") == 0
                && *static_cast<int32_t const*>(as->fields[0].data) == 0
                && *static_cast<int32_t const*>(as->fields[1].data) == 0,
            "GacnActivity serialises scaled = 0, out_half = 0 (the defaults)");
    }
    check(act.build->getWorkspaceSize(nullptr, 2, nullptr, 1) == 0, "no workspace");

    // ---- clone / attachToContext ----
    {
        Plugin cl(gate.runtime->attachToContext(nullptr));
        check(cl.v3 != nullptr && std::string(cl.build->getTimingCacheID()) == "gacn1;relu=1",
            "attachToContext clones");
    }

    // ---- output types ----
    DataType out[2];
    DataType const hh[] = {DataType::kHALF, DataType::kHALF};
    DataType const fh[] = {DataType::kFLOAT, DataType::kHALF};
    check(act.build->getOutputDataTypes(out, 1, hh, 2) == 0 && out[0] == DataType::kHALF, "activity HALF");
    check(act.build->getOutputDataTypes(out, 1, fh, 2) != 0, "activity mixed types rejected");
    DataType const gh[] = {DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
    DataType const gbad[] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT};
    check(gate.build->getOutputDataTypes(out, 1, gh, 3) == 0 && out[0] == DataType::kHALF, "gate HALF");
    check(gate.build->getOutputDataTypes(out, 1, gbad, 3) != 0, "gate HALF weight rejected");
    check(ref.build->getOutputDataTypes(out, 2, gh, 3) == 0 && out[0] == DataType::kFLOAT && out[1] == DataType::kFLOAT,
        "refine outputs FLOAT for HALF d4");

    // ---- output shapes ----
    ExprPool pool;
    FakeExprBuilder eb;
    {
        DimsExprs in[2] = {pool.make({1, 64, -1, -1}), pool.make({-1, 64, -1, -1})};
        DimsExprs o[1];
        check(act.build->getOutputShapes(in, 2, nullptr, 0, o, 1, eb) == 0 && o[0].nbDims == 4
                && o[0].d[0] == in[1].d[0] && o[0].d[3] == in[1].d[3],
            "activity output = fb dims");
    }
    {
        DimsExprs in[3] = {pool.make({-1, 64, -1, -1}), pool.make({64, 7, 7}), pool.make({2, 64})};
        DimsExprs o[1];
        check(gate.build->getOutputShapes(in, 3, nullptr, 0, o, 1, eb) == 0 && o[0].d[1] == in[0].d[1],
            "gate output = x dims");
        DimsExprs bad[3] = {pool.make({-1, 64, -1, -1}), pool.make({48, 7, 7}), pool.make({2, 64})};
        gGlobalLogger.messages.clear();
        check(gate.build->getOutputShapes(bad, 3, nullptr, 0, o, 1, eb) != 0
                && gGlobalLogger.sawError("channel mismatch"),
            "gate weight/x channel mismatch rejected at build");
    }
    {
        DimsExprs in[3] = {pool.make({-1, 1, -1, -1}), pool.make({1, 1, -1, -1}), pool.make({-1, 1, -1, -1})};
        DimsExprs o[2];
        check(ref.build->getOutputShapes(in, 3, nullptr, 0, o, 2, eb) == 0 && o[0].d[0] == in[0].d[0]
                && o[1].d[2] == in[0].d[2],
            "refine outputs = d4 dims");
    }

    // ---- formats: FP32 or FP16 linear only ----
    check(countCombinations(act.build, 2, 1) == 2, "activity: 2 format combinations (all FP32, all FP16)");
    check(countCombinations(gate.build, 3, 1) == 2, "gate: 2 format combinations");
    check(countCombinations(ref.build, 3, 2) == 2, "refine: 2 format combinations");

    // ---- configurePlugin (build time, -1 wildcards) ----
    {
        DynamicPluginTensorDesc in[2] = {dyn({1, 64, -1, -1}, DataType::kHALF), dyn({-1, 64, -1, -1}, DataType::kHALF)};
        DynamicPluginTensorDesc o[1] = {dyn({-1, 64, -1, -1}, DataType::kHALF)};
        check(act.build->configurePlugin(in, 2, o, 1) == 0, "activity configure with wildcards");
        DynamicPluginTensorDesc bad[2] = {dyn({2, 64, 8, 8}, DataType::kHALF), dyn({3, 64, 8, 8}, DataType::kHALF)};
        gGlobalLogger.messages.clear();
        check(act.build->configurePlugin(bad, 2, o, 1) != 0 && gGlobalLogger.sawError("fa's batch must be 1"),
            "activity na not in {1,N} rejected");
    }
    {
        DynamicPluginTensorDesc in[3] = {dyn({-1, 1, -1, -1}, DataType::kFLOAT, {1, 1, 4, 256}, {4, 1, 2160, 3840}),
            dyn({1, 1, -1, -1}, DataType::kFLOAT), dyn({-1, 1, -1, -1}, DataType::kFLOAT)};
        DynamicPluginTensorDesc o[2] = {dyn({-1, 1, -1, -1}, DataType::kFLOAT), dyn({-1, 1, -1, -1}, DataType::kFLOAT)};
        gGlobalLogger.messages.clear();
        check(ref.build->configurePlugin(in, 3, o, 2) != 0 && gGlobalLogger.sawError("raise the profile's minimum"),
            "refine profile min H < 8 rejected");
        in[0].min = dims({1, 1, 256, 256});
        check(ref.build->configurePlugin(in, 3, o, 2) == 0, "refine profile min 256x256 accepted");
    }

    // ---- onShapeChange + enqueue ----
    int dummy[4] = {};
    void const* ins[3] = {&dummy[0], &dummy[1], &dummy[2]};
    void* outs[2] = {&dummy[3], &dummy[2]};
    auto* stream = reinterpret_cast<cudaStream_t>(&dummy[1]);
    {
        PluginTensorDesc in[2] = {desc({1, 64, 37, 53}, DataType::kHALF), desc({3, 64, 37, 53}, DataType::kHALF)};
        PluginTensorDesc o[1] = {desc({3, 64, 37, 53}, DataType::kHALF)};
        check(act.runtime->onShapeChange(in, 2, o, 1) == 0, "activity onShapeChange");
        check(act.runtime->enqueue(in, o, ins, outs, nullptr, stream) == 0 && gCall.op == 1 && gCall.n == 3
                && gCall.na == 1 && gCall.c == 64 && gCall.h == 37 && gCall.w == 53 && gCall.dtype == GACN_F16
                && gCall.layout == GACN_NCHW && gCall.in0 == ins[0] && gCall.out0 == outs[0] && gCall.stream == stream,
            "activity enqueue arguments");
        PluginTensorDesc bad[2] = {desc({1, 64, 37, 53}, DataType::kHALF), desc({3, 64, 37, 52}, DataType::kHALF)};
        gGlobalLogger.messages.clear();
        check(act.runtime->onShapeChange(bad, 2, o, 1) != 0 && gGlobalLogger.sawError("same C, H and W"),
            "activity H/W mismatch rejected");
    }
    {
        PluginTensorDesc in[3] = {desc({2, 48, 9, 11}, DataType::kFLOAT), desc({48, 7, 7}, DataType::kFLOAT),
            desc({2, 48}, DataType::kFLOAT)};
        PluginTensorDesc o[1] = {desc({2, 48, 9, 11}, DataType::kFLOAT)};
        check(gate.runtime->onShapeChange(in, 3, o, 1) == 0, "gate onShapeChange");
        check(gate.runtime->enqueue(in, o, ins, outs, nullptr, stream) == 0 && gCall.op == 2 && gCall.n == 2
                && gCall.c == 48 && gCall.h == 9 && gCall.w == 11 && gCall.dtype == GACN_F32 && gCall.relu == 1
                && gCall.layout == GACN_NCHW,
            "gate enqueue arguments (relu=1)");
        PluginTensorDesc in3[3] = {desc({1, 3, 9, 11}, DataType::kFLOAT), desc({3, 7, 7}, DataType::kFLOAT),
            desc({2, 3}, DataType::kFLOAT)};
        PluginTensorDesc o3[1] = {desc({1, 3, 9, 11}, DataType::kFLOAT)};
        gGlobalLogger.messages.clear();
        check(gate.runtime->enqueue(in3, o3, ins, outs, nullptr, stream) != 0
                && gGlobalLogger.sawError("gacn_spatial_gate failed: 1 ("),
            "kernel error reported with the CUDA error name");
        PluginTensorDesc bad[3] = {desc({2, 48, 9, 11}, DataType::kFLOAT), desc({48, 7, 7}, DataType::kFLOAT),
            desc({2, 32}, DataType::kFLOAT)};
        check(gate.runtime->onShapeChange(bad, 3, o, 1) != 0, "gate bn channel mismatch rejected");
    }
    {
        PluginTensorDesc in[3] = {desc({4, 1, 8, 9}, DataType::kHALF), desc({4, 1, 8, 9}, DataType::kFLOAT),
            desc({4, 1, 8, 9}, DataType::kFLOAT)};
        PluginTensorDesc o[2] = {desc({4, 1, 8, 9}, DataType::kFLOAT), desc({4, 1, 8, 9}, DataType::kFLOAT)};
        check(ref.runtime->onShapeChange(in, 3, o, 2) == 0, "refine onShapeChange na = N");
        check(ref.runtime->enqueue(in, o, ins, outs, nullptr, stream) == 0 && gCall.op == 3 && gCall.n == 4
                && gCall.na == 4 && gCall.h == 8 && gCall.w == 9 && gCall.dtype == GACN_F16 && gCall.out0 == outs[0]
                && gCall.out1 == outs[1],
            "refine enqueue arguments");
        PluginTensorDesc small[3] = {desc({1, 1, 7, 9}, DataType::kFLOAT), desc({1, 1, 7, 9}, DataType::kFLOAT),
            desc({1, 1, 7, 9}, DataType::kFLOAT)};
        PluginTensorDesc os[2] = {desc({1, 1, 7, 9}, DataType::kFLOAT), desc({1, 1, 7, 9}, DataType::kFLOAT)};
        gGlobalLogger.messages.clear();
        check(ref.runtime->onShapeChange(small, 3, os, 2) != 0 && gGlobalLogger.sawError("at least 8"),
            "refine H < 8 rejected");
        PluginTensorDesc na2[3] = {desc({3, 1, 8, 8}, DataType::kFLOAT), desc({2, 1, 8, 8}, DataType::kFLOAT),
            desc({3, 1, 8, 8}, DataType::kFLOAT)};
        PluginTensorDesc o3[2] = {desc({3, 1, 8, 8}, DataType::kFLOAT), desc({3, 1, 8, 8}, DataType::kFLOAT)};
        check(ref.runtime->onShapeChange(na2, 3, o3, 2) != 0, "refine na = 2, N = 3 rejected");
    }

    // ---- ABI 3: GacnActivity scaled = 1 (4 inputs) ----
    {
        PluginField scaledField("scaled", &one, PluginFieldType::kINT32, 1);
        PluginFieldCollection sfc{1, &scaledField};
        Plugin sact(actC->createPlugin("activity_scaled", &sfc, TensorRTPhase::kBUILD));
        check(sact.v3 != nullptr && std::string(sact.build->getTimingCacheID()) == "gacn1;scaled=1",
            "GacnActivity scaled = 1 created");
        PluginFieldCollection const* ss = sact.runtime->getFieldsToSerialize();
        Plugin sact2(actC->createPlugin("activity_scaled", ss, TensorRTPhase::kRUNTIME));
        check(sact2.v3 != nullptr && std::string(sact2.build->getTimingCacheID()) == "gacn1;scaled=1",
            "scaled = 1 serialised and restored");
        PluginField scaledBad("scaled", &two, PluginFieldType::kINT32, 1);
        PluginFieldCollection sbad{1, &scaledBad};
        gGlobalLogger.messages.clear();
        check(actC->createPlugin("bad", &sbad, TensorRTPhase::kBUILD) == nullptr
                && gGlobalLogger.sawError("field 'scaled' must be 0 or 1"),
            "scaled = 2 rejected");
        DataType const t4[] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
        DataType const t4bad[] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kFLOAT};
        check(sact.build->getOutputDataTypes(out, 1, t4, 4) == 0 && out[0] == DataType::kHALF, "scaled HALF");
        check(sact.build->getOutputDataTypes(out, 1, t4bad, 4) != 0, "scaled: HALF scales rejected");
        gGlobalLogger.messages.clear();
        check(sact.build->getOutputDataTypes(out, 1, t4, 2) != 0 && gGlobalLogger.sawError("expected 4 inputs"),
            "scaled = 1 with 2 inputs rejected");
        check(countCombinations(sact.build, 4, 1) == 2, "scaled activity: 2 format combinations (FP32 scales)");
        DimsExprs in[4] = {pool.make({1, 64, -1, -1}), pool.make({-1, 64, -1, -1}), pool.make({1, 64}),
            pool.make({-1, 64})};
        DimsExprs o[1];
        check(sact.build->getOutputShapes(in, 4, nullptr, 0, o, 1, eb) == 0 && o[0].d[1] == in[1].d[1],
            "scaled activity output = fb dims");
        PluginTensorDesc rin[4] = {desc({1, 64, 37, 53}, DataType::kFLOAT), desc({2, 64, 37, 53}, DataType::kFLOAT),
            desc({1, 64}, DataType::kFLOAT), desc({2, 64}, DataType::kFLOAT)};
        PluginTensorDesc ro[1] = {desc({2, 64, 37, 53}, DataType::kFLOAT)};
        void const* ins4[4] = {&dummy[0], &dummy[1], &dummy[2], &dummy[3]};
        check(sact.runtime->onShapeChange(rin, 4, ro, 1) == 0, "scaled activity onShapeChange");
        check(sact.runtime->enqueue(rin, ro, ins4, outs, nullptr, stream) == 0 && gCall.op == 4 && gCall.n == 2
                && gCall.na == 1 && gCall.c == 64 && gCall.dtype == GACN_F32 && gCall.out_dtype == GACN_F32
                && gCall.layout == GACN_NCHW && gCall.out_layout == GACN_NCHW && gCall.scale == ins4[2]
                && gCall.scale_b == ins4[3] && gCall.out0 == outs[0],
            "scaled activity enqueue calls gacn_activity_scaled with sa, sb");
        PluginTensorDesc rbad[4] = {desc({1, 64, 37, 53}, DataType::kFLOAT), desc({2, 64, 37, 53}, DataType::kFLOAT),
            desc({1, 64}, DataType::kFLOAT), desc({2, 48}, DataType::kFLOAT)};
        gGlobalLogger.messages.clear();
        check(sact.runtime->onShapeChange(rbad, 4, ro, 1) != 0 && gGlobalLogger.sawError("the scales must be"),
            "scaled activity: sb [2,48] for C = 64 rejected");

        // out_half = 1: FP32 features in, HALF bm out (no Cast layer in FP16 engines)
        PluginField hf[2] = {PluginField("scaled", &one, PluginFieldType::kINT32, 1),
            PluginField("out_half", &one, PluginFieldType::kINT32, 1)};
        PluginFieldCollection hfc{2, hf};
        Plugin hact(actC->createPlugin("activity_half", &hfc, TensorRTPhase::kBUILD));
        check(hact.v3 != nullptr && std::string(hact.build->getTimingCacheID()) == "gacn1;scaled=1;out_half=1",
            "out_half = 1 created");
        DataType const f4[] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
        check(hact.build->getOutputDataTypes(out, 1, f4, 4) == 0 && out[0] == DataType::kHALF, "out_half: bm HALF");
        check(countCombinations(hact.build, 4, 1) == 2, "out_half: 2 combinations (FP32 or FP16 in, HALF out)");
        PluginTensorDesc ho[1] = {desc({2, 64, 37, 53}, DataType::kHALF)};
        check(hact.runtime->onShapeChange(rin, 4, ho, 1) == 0
                && hact.runtime->enqueue(rin, ho, ins4, outs, nullptr, stream) == 0 && gCall.op == 4
                && gCall.dtype == GACN_F32 && gCall.out_dtype == GACN_F16 && gCall.scale == ins4[2],
            "out_half enqueue: FP32 in, F16 out");
        PluginFieldCollection const* hs = hact.runtime->getFieldsToSerialize();
        check(hs && hs->nbFields == 2 && *static_cast<int32_t const*>(hs->fields[1].data) == 1, "out_half serialised");
    }

    // ---- ABI 3: GacnFeatureConv ----
    {
        Plugin conv(convC->createPlugin("fe2", nullptr, TensorRTPhase::kBUILD));
        check(conv.v3 && std::string(conv.build->getTimingCacheID()) == "gacn1;algo=1", "GacnFeatureConv algo default 1");
        int32_t const zero = 0;
        PluginField algoField("algo", &zero, PluginFieldType::kINT32, 1);
        PluginFieldCollection afc{1, &algoField};
        Plugin conv0(convC->createPlugin("fe2", &afc, TensorRTPhase::kBUILD));
        PluginFieldCollection const* cs = conv0.runtime->getFieldsToSerialize();
        check(cs && cs->nbFields == 1 && *static_cast<int32_t const*>(cs->fields[0].data) == 0, "algo = 0 serialised");
        PluginField algoBad("algo", &two, PluginFieldType::kINT32, 1);
        PluginFieldCollection abad{1, &algoBad};
        gGlobalLogger.messages.clear();
        check(convC->createPlugin("bad", &abad, TensorRTPhase::kBUILD) == nullptr
                && gGlobalLogger.sawError("field 'algo' must be 0"),
            "algo = 2 rejected");
        DataType const f7[] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT,
            DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
        DataType const h7[] = {DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT,
            DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
        DataType o2[2];
        check(conv.build->getOutputDataTypes(o2, 2, f7, 7) == 0 && o2[0] == DataType::kFLOAT
                && o2[1] == DataType::kFLOAT,
            "feature conv outputs FLOAT");
        gGlobalLogger.messages.clear();
        check(conv.build->getOutputDataTypes(o2, 2, h7, 7) != 0 && gGlobalLogger.sawError("features stay float32"),
            "feature conv: HALF x rejected");
        check(countCombinations(conv.build, 7, 2) == 1, "feature conv: 1 format combination (all FP32 linear)");
        DimsExprs in[7] = {pool.make({-1, 32, -1, -1}), pool.make({16, 32, 3, 3}), pool.make({16}),
            pool.make({2, 16}), pool.make({2, 16}), pool.make({16, 2}), pool.make({-1, 32})};
        DimsExprs o[2];
        check(conv.build->getOutputShapes(in, 7, nullptr, 0, o, 2, eb) == 0 && o[0].nbDims == 4
                && o[0].d[0] == in[0].d[0] && o[0].d[1] == in[1].d[0] && o[0].d[3] == in[0].d[3] && o[1].nbDims == 2
                && o[1].d[0] == in[0].d[0] && o[1].d[1] == in[1].d[0],
            "feature conv outputs u [N,16,H,W], s [N,16]");
        DimsExprs bad[7] = {pool.make({-1, 48, -1, -1}), pool.make({16, 32, 3, 3}), pool.make({16}),
            pool.make({2, 16}), pool.make({2, 16}), pool.make({16, 2}), pool.make({-1, 32})};
        gGlobalLogger.messages.clear();
        check(conv.build->getOutputShapes(bad, 7, nullptr, 0, o, 2, eb) != 0
                && gGlobalLogger.sawError("channel mismatch"),
            "feature conv: weight cin 32 for x cin 48 rejected");
        DynamicPluginTensorDesc din[7] = {dyn({-1, 32, -1, -1}, DataType::kFLOAT, {1, 32, 8, 8}, {3, 32, 2160, 3840}),
            dyn({16, 32, 3, 3}, DataType::kFLOAT), dyn({16}, DataType::kFLOAT), dyn({2, 16}, DataType::kFLOAT),
            dyn({2, 16}, DataType::kFLOAT), dyn({16, 2}, DataType::kFLOAT), dyn({-1, 32}, DataType::kFLOAT)};
        DynamicPluginTensorDesc dout[2] = {dyn({-1, 16, -1, -1}, DataType::kFLOAT), dyn({-1, 16}, DataType::kFLOAT)};
        check(conv.build->configurePlugin(din, 7, dout, 2) == 0, "feature conv configure with wildcards");
        check(conv.build->getWorkspaceSize(din, 7, dout, 2) == size_t{3} * 135 * 60 * 16 * 4,
            "feature conv workspace = N x blocks x 16 floats at the profile maximum");
        PluginTensorDesc rin[7] = {desc({2, 32, 37, 70}, DataType::kFLOAT), desc({16, 32, 3, 3}, DataType::kFLOAT),
            desc({16}, DataType::kFLOAT), desc({2, 16}, DataType::kFLOAT), desc({2, 16}, DataType::kFLOAT),
            desc({16, 2}, DataType::kFLOAT), desc({2, 32}, DataType::kFLOAT)};
        PluginTensorDesc ro[2] = {desc({2, 16, 37, 70}, DataType::kFLOAT), desc({2, 16}, DataType::kFLOAT)};
        void const* ins7[7] = {&dummy[0], &dummy[1], &dummy[2], &dummy[3], &dummy[0], &dummy[1], &dummy[2]};
        int ws[4] = {};
        check(conv.runtime->onShapeChange(rin, 7, ro, 2) == 0, "feature conv onShapeChange");
        gCalls.clear();
        check(conv.runtime->enqueue(rin, ro, ins7, outs, ws, stream) == 0 && gCalls.size() == 2, "two launches");
        if (gCalls.size() == 2)
        {
            Call const& a = gCalls[0];
            Call const& b = gCalls[1];
            check(a.op == 5 && a.n == 2 && a.c == 32 && a.h == 37 && a.w == 70 && a.algo == GACN_CONV_3XTF32
                    && a.in0 == ins7[0] && a.scale == ins7[6] && a.stride == 32 && a.xs == 32LL * 37 * 70
                    && a.ys == 16LL * 37 * 70 && a.out0 == outs[0] && a.out1 == static_cast<void*>(ws)
                    && a.stream == stream,
                "feature conv enqueue: gacn_feature_conv arguments");
            check(b.op == 6 && b.n == 2 && b.blocks == 3 * 2 && b.count == 37LL * 70 && b.in0 == static_cast<void*>(ws)
                    && b.out0 == outs[1] && b.stride == 16 && b.stream == stream,
                "feature conv enqueue: gacn_cse_scale arguments");
        }
        gGlobalLogger.messages.clear();
        check(conv.runtime->enqueue(rin, ro, ins7, outs, nullptr, stream) != 0
                && gGlobalLogger.sawError("no workspace"),
            "feature conv without workspace rejected");
        PluginTensorDesc rbad[7] = {desc({2, 32, 37, 70}, DataType::kFLOAT), desc({16, 32, 3, 3}, DataType::kFLOAT),
            desc({16}, DataType::kFLOAT), desc({2, 16}, DataType::kFLOAT), desc({2, 16}, DataType::kFLOAT),
            desc({16, 2}, DataType::kFLOAT), desc({1, 32}, DataType::kFLOAT)};
        gGlobalLogger.messages.clear();
        check(conv.runtime->onShapeChange(rbad, 7, ro, 2) != 0 && gGlobalLogger.sawError("in_scale"),
            "feature conv: in_scale [1,32] for N = 2 rejected");
    }

    // ---- setLoggerFinder routes messages to TensorRT's logger ----
    {
        struct Finder : ILoggerFinder
        {
            RecordingLogger logger;
            ILogger* findLogger() override
            {
                return &logger;
            }
        } finder;
        setLoggerFinder(&finder);
        DataType const bad[] = {DataType::kINT8, DataType::kINT8};
        act.build->getOutputDataTypes(out, 1, bad, 2);
        check(finder.logger.sawError("GacnActivity[activity] getOutputDataTypes"), "errors go to the finder's logger");
        setLoggerFinder(nullptr);
    }

    std::printf("%d checks, %d failures\n", gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}
