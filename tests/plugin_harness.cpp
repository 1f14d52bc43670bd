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
};
Call gCall;
} // namespace

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
    check(nb == 3 && creators != nullptr, "getCreators returns 3 creators");
    char const* const names[] = {"GacnActivity", "GacnSpatialGate", "GacnBoundaryRefine"};
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
    check(actC->getFieldNames()->nbFields == 0 && refC->getFieldNames()->nbFields == 0, "no fields");
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
    check(act.runtime->getFieldsToSerialize()->nbFields == 0, "GacnActivity serialises no fields");
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
