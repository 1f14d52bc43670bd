"""Helpers for the tests and benchmarks, shipped with the package so that both can use them, but
never imported by the runtime (the import test in tests/test_tiling.py checks that): golden
comparisons at explicit tolerances (metrics), numpy drivers and a CMake build of the kernel
libraries (kernels), ONNX Runtime runners of the TensorRT plugin graph (ort_plugins), stack
registration in one call (registration), the memory-model probes (memory_model) and pairs of
any size (pairs)."""
