"""The host runners' memory cost models bound the measured peak (engine.testing.memory_model, one
fresh process per case), without overstating it so much that tiles get needlessly small."""
import importlib.util

import pytest

from engine.testing.memory_model import measure

CASES = [("onnxruntime", "whole", 2, 384), ("onnxruntime", "sums3", 3, 512),
         ("openvino", "whole", 2, 384), ("openvino", "whole", 3, 1056), ("openvino", "tile", 3, 384),
         ("openvino", "sums3", 2, 512)]


@pytest.mark.parametrize("backend,variant,frames,side", CASES)
def test_cost_model_bounds_the_peak(backend, variant, frames, side, params, weights):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    from engine.backends.base import create_runner
    measured = measure(weights, backend, variant, frames, side)["work_bytes"]
    model = create_runner(backend, params=params).memory(variant, frames, side, side)
    assert measured <= model, f"{backend} {variant}: measured {measured / 2**20:.0f} MiB > model {model / 2**20:.0f} MiB"
    assert model <= 1.6 * measured, f"{backend} {variant}: model {model / 2**20:.0f} MiB overstates {measured / 2**20:.0f} MiB"
