"""The Python-backend models of the GACN repository (engine.serve.repository): run by Triton's stub.

Settings come from ``config.pbtxt`` once, at load. Every input the CLI refuses is answered with a
``TritonError`` carrying the engine's message and status ``INVALID_ARG`` (HTTP 400, gRPC
INVALID_ARGUMENT), and the instance keeps serving. Code paths are the same on numpy 1.26 and 2.x.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from engine.errors import GacnError, InputError
from engine.serve.repository import REQUEST_PARAMETERS, PAIR, STACK, ModelOptions

log = logging.getLogger("gacn.serve")
MIN_STACK = 2


def _pb():
    import triton_python_backend_utils as pb  # only inside Triton's Python stub
    return pb


def _settings(args: dict) -> tuple[dict, ModelOptions]:
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    return config, ModelOptions.from_parameters(params)


def _parameters(request, allowed) -> dict:
    params = json.loads(request.parameters() or "{}")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(f"unknown request parameter(s) {', '.join(unknown)}; this model takes "
                         f"{', '.join(allowed) or 'none'}")
    return params


def _image(request, name: str, batched: bool) -> np.ndarray:
    tensor = _pb().get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InputError(f"input {name} is missing")
    x = tensor.as_numpy()
    if batched:
        if x.shape[0] != 1:
            raise InputError(f"{name}: send one item per request (batch {x.shape[0]}); the server batches requests")
        x = x[0]
    return x


def _hwc(x: np.ndarray, name: str, dims: int = 3) -> np.ndarray:
    """H x W x C (C = 1 or 3) -> the engine's H x W or H x W x 3 (checks the rest: engine.preprocess)."""
    if x.ndim != dims or x.shape[-1] not in (1, 3):
        lead = "N x " if dims == 4 else ""
        raise InputError(f"{name}: shape {tuple(x.shape)} is not {lead}H x W x C with C = 1 (gray) or 3 (RGB)")
    return x[..., 0] if x.shape[-1] == 1 else x


class _Model:
    """Loads one Fuser per instance (a KIND_GPU instance on its device) and answers requests."""

    def initialize(self, args):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        config, self.options = _settings(args)
        self.batched = int(config.get("max_batch_size", 0)) > 0
        from engine.checkpoint import sha256_of
        from engine.fusion import Fuser
        from engine.weights import resolve_weights
        kwargs = self.options.fuser_kwargs()
        if self.options.backend != "tensorrt" and self.options.onnx is None:
            kwargs["weights"] = resolve_weights(kwargs.get("weights"))
            log.info("%s: checkpoint %s sha256 %s", args["model_name"], kwargs["weights"], sha256_of(kwargs["weights"]))
        if args.get("model_instance_kind") == "GPU":
            kwargs["device"] = int(args["model_instance_device_id"])
        self.fuser = Fuser(self.options.backend, **kwargs)
        log.info("%s: instance %s ready on %s", args["model_name"], args.get("model_instance_name"), self.fuser.backend)

    def finalize(self):
        self.fuser.close()

    def execute(self, requests, parsed: list | None = None):
        """Each request answered alone (``parsed``: the requests' parse() results, if made)."""
        pb = _pb()
        responses = [None] * len(requests)
        for i, r in enumerate(requests):
            try:
                responses[i] = self.answer(r) if parsed is None else self.answer(r, parsed[i])
            except GacnError as e:
                responses[i] = self.error(str(e), pb.TritonError.INVALID_ARG)
            except Exception as e:  # noqa: BLE001 - a bug must not take the instance down
                log.exception("request failed")
                responses[i] = self.error(f"internal error: {type(e).__name__}: {e}", pb.TritonError.INTERNAL)
        return responses

    @staticmethod
    def error(message: str, code):
        pb = _pb()
        return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message, code))

    def respond(self, request, outputs: dict):
        pb = _pb()
        wanted = set(request.requested_output_names())
        tensors = [pb.Tensor(k, np.ascontiguousarray(v[None] if self.batched else v))
                   for k, v in outputs.items() if k in wanted and v is not None]
        return pb.InferenceResponse(output_tensors=tensors)


class PairModel(_Model):
    """Inputs A, B (H x W x C); outputs FUSED (same dtype and shape), DECISION and MASK (float32 H x W,
    computed only when requested). Request parameter ``align`` (none, auto, affine, homography).
    A dynamic batch of registered pairs runs through Fuser.stream, each answer to its own request."""

    def execute(self, requests):
        if not self.batched or len(requests) < 2:
            return super().execute(requests)
        pb = _pb()
        parsed = []
        for r in requests:
            try:
                parsed.append(self.parse(r))
            except GacnError as e:
                parsed.append(e)
        if any(not isinstance(p, Exception) and p[3] != "none" for p in parsed):
            return super().execute(requests, parsed)   # one by one, each decoded once
        maps = any(not isinstance(p, Exception) and p[2] for p in parsed)
        pairs = (p if isinstance(p, Exception) else (p[0], p[1]) for p in parsed)
        responses = []
        for r, p, res in zip(requests, parsed, self.fuser.stream(pairs, slots=len(requests), maps=maps)):
            if res.error is not None:
                responses.append(self.error(str(res.error), pb.TritonError.INVALID_ARG))
            else:
                responses.append(self.respond(r, {"FUSED": res.fused.reshape(p[4]), "DECISION": res.decision,
                                                  "MASK": res.mask}))
        return responses

    def parse(self, request):
        """(a, b, maps wanted, align, FUSED's shape) of one request, checked as the CLI checks a pair."""
        from engine.preprocess import check_sources
        params = _parameters(request, REQUEST_PARAMETERS[PAIR])
        align = str(params.get("align", "none"))
        a, b = (_image(request, n, self.batched) for n in ("A", "B"))
        shape = a.shape
        a, b = check_sources([_hwc(a, "A"), _hwc(b, "B")], ["A", "B"])
        maps = bool({"DECISION", "MASK"} & set(request.requested_output_names()))
        return a, b, maps, align, shape

    def answer(self, request, parsed=None):
        """One request; ``parsed``: its parse() already made (or the error it raised)."""
        if isinstance(parsed, Exception):
            raise parsed
        a, b, maps, align, shape = self.parse(request) if parsed is None else parsed
        res = self.fuser.fuse(a, b, maps=maps, align=align)
        return self.respond(request, {"FUSED": res.fused.reshape(shape), "DECISION": res.decision, "MASK": res.mask})


class StackModel(_Model):
    """Input FRAMES (N x H x W x C, frame 0 the reference); outputs FUSED (H x W x C) and INDEX
    (int32 H x W). Request parameters ``strategy``, ``align`` (default auto), ``crop`` (bool) and
    ``reference`` (first, middle, last or a frame number; the output's geometry)."""

    def answer(self, request):
        params = _parameters(request, REQUEST_PARAMETERS[STACK])
        frames = _image(request, "FRAMES", False)
        frames = _hwc(frames, "FRAMES", dims=4)
        if len(frames) < MIN_STACK:
            raise InputError(f"a focus stack needs at least {MIN_STACK} frames, got {len(frames)}")
        crop = params.get("crop", False)
        if not isinstance(crop, bool):
            raise InputError(f"crop must be true or false, got {crop!r}")
        from engine import strategies
        reference = params.get("reference")
        res = self.fuser.fuse_stack(list(frames), strategy=str(params.get("strategy", strategies.DEFAULT)),
                                    align=str(params.get("align", "auto")),
                                    names=[f"frame {i}" for i in range(len(frames))], crop=crop,
                                    reference=None if reference is None else str(reference))
        fused = res.fused if res.fused.ndim == 3 else res.fused[..., None]
        return self.respond(request, {"FUSED": fused, "INDEX": res.index.astype(np.int32, copy=False)})
