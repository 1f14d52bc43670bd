"""The executor on the host: numpy planes around a HostRunner (OpenVINO, ONNX Runtime), synchronous.

It implements engine.executor.Executor and the StackAccumulators capability of
engine.pipeline_api (engine.stack's numpy accumulators)."""
from __future__ import annotations

import numpy as np

from engine import memory, preprocess
from engine.results import FusionResult
from engine.stack import Calibration, Sequential


class HostWorkspace:
    def __init__(self):
        self.result: FusionResult | None = None


class _HostAccumulator:
    """engine.stack's numpy accumulators behind engine.pipeline_api.Accumulator."""

    def __init__(self, acc):
        self.acc = acc

    def update(self, mask, k, frame, index):
        self.acc.update(mask[k], frame, index)

    def luma(self):
        return self.acc.luma()[None]

    def result(self):
        return self.acc.out, self.acc.index


class HostExecutor:
    """engine.executor.Executor for host runners; images are numpy arrays, planes [n, H, W]."""

    on_device = False

    def __init__(self, runner):
        self.runner = runner
        runner.activate()

    def workspace(self) -> HostWorkspace:
        return HostWorkspace()

    def begin(self, ws) -> None:
        pass

    def end(self, ws) -> None:
        pass

    def budget(self) -> int:
        return memory.HOST_DEFAULT

    def available(self) -> int | None:
        return memory.host_available()

    def put(self, ws, name, image, what):
        return preprocess.check_image(image, what)

    def luma(self, ws, name, image):
        return preprocess.luma(image)[None]

    def planes(self, ws, name, n, height, width):
        return np.empty((n, height, width), np.float32)

    @staticmethod
    def _window(lumas, tile) -> np.ndarray:
        if tile is None:
            return np.stack([p[0] for p in lumas])[:, None]
        ys, xs = tile.window_slices
        return np.stack([p[0, ys, xs] for p in lumas])[:, None]

    def network(self, ws, lumas, tiles, cse, decision, mask, on_tile=None) -> None:
        for tile in tiles or [None]:
            d, m = self.runner.infer(self._window(lumas, tile), cse)
            if on_tile is not None:
                on_tile()
            if tile is None:
                mask[...] = m[:, 0]
                if decision is not None:
                    decision[...] = d[:, 0]
                continue
            (cy, cx), (ys, xs) = tile.core_in_window, tile.core_slices
            mask[:, ys, xs] = m[:, 0, cy, cx]
            if decision is not None:
                decision[:, ys, xs] = d[:, 0, cy, cx]

    def block_sums(self, ws, block, lumas, tiles, cse, on_tile=None) -> np.ndarray:
        total = np.zeros((len(lumas), 16), np.float64)
        for tile in tiles:
            cy, cx = tile.core_in_window
            window = self._window(lumas, tile)
            colmask = np.zeros(window.shape[-1], np.float32)
            colmask[cx] = 1
            rows = self.runner.block_sums(block, window, cse, colmask)
            total += rows[:, :, cy].sum(axis=2, dtype=np.float64)
            if on_tile is not None:
                on_tile()
        return total

    def blend(self, ws, name, a, b, mask, k=0):
        return preprocess.blend(a, b, mask[k])

    def calibration(self, ws, mask, frame0, frame1):
        return _HostAccumulator(Calibration(mask[0], frame0, frame1))

    def sequential(self, ws, frame0):
        return _HostAccumulator(Sequential(frame0))

    def fetch(self, ws, fused, decision, mask, maps) -> None:
        ws.result = FusionResult(fused, None if decision is None else decision[0], mask[0]), maps

    def collect(self, ws) -> FusionResult:
        (res, maps), ws.result = ws.result, None
        if not maps:
            res.decision = res.mask = None
        return res

    def to_host(self, image) -> np.ndarray:
        return image

    def close(self) -> None:
        self.runner.deactivate()
