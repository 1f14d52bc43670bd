"""RemoteFuser: ``fuse`` and ``fuse_stack`` like engine.Fuser, computed by a GACN Triton server.

>>> with RemoteFuser("grpc://127.0.0.1:8001") as f:
...     out = f.fuse(a, b).fused

Tensors travel as binary data (HTTP binary extension, gRPC). The server checks the inputs: what it
refuses comes back as ``InputError`` with its message. A server that is down, times out or dies
mid-request is tried ``retries`` more times, then gives one ``ServerError`` naming the URL. One
RemoteFuser per thread (the HTTP client is not thread-safe). Needs ``tritonclient`` (the [serve]
extra), imported on first use.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import numpy as np

from engine.errors import GacnError, InputError
from engine.results import FusionResult, StackResult
from engine.serve.repository import PAIR, STACK, model_name

log = logging.getLogger(__name__)
SCHEMES = ("http", "grpc")
_BAD_REQUEST = ("400", "StatusCode.INVALID_ARGUMENT")


class ServerError(GacnError):
    """The server at a URL cannot be reached, timed out, or failed while answering."""


def _tritonclient(scheme: str):
    try:
        if scheme == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        raise GacnError(f"a GACN server client needs tritonclient ({e}): pip install 'gacn-engine[serve]'") from None
    return tc, InferenceServerException


class RemoteFuser:
    """Fuse on a GACN Triton server at ``url`` (``http://host:port`` or ``grpc://host:port``).

    ``timeout``: seconds for one request (connect, send, compute, answer); ``retries``: further
    tries after a transport failure (never after the server refused the input)."""

    def __init__(self, url: str, *, timeout: float = 120.0, retries: int = 1, retry_wait: float = 1.0):
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
            raise InputError(f"server URL {url!r}: give http://HOST:PORT or grpc://HOST:PORT")
        if timeout <= 0 or retries < 0:
            raise InputError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.url, self.timeout, self.retries, self.retry_wait = url, float(timeout), int(retries), retry_wait
        self._tc, self._exc = _tritonclient(parts.scheme)
        self._grpc = parts.scheme == "grpc"
        if self._grpc:
            self._client = self._tc.InferenceServerClient(parts.netloc)
        else:
            self._client = self._tc.InferenceServerClient(parts.netloc, connection_timeout=self.timeout,
                                                          network_timeout=self.timeout)
        self._batched: dict[str, bool] = {}
        self.backend = f"server {url}"

    # -- transport -----------------------------------------------------------------------------
    def _call(self, what: str, fn):
        """Run ``fn`` with retries; refusals become InputError, the rest one ServerError."""
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait)
            try:
                return fn()
            except self._exc as e:
                if str(e.status()) in _BAD_REQUEST:
                    raise InputError(e.message() or str(e)) from None
                last = e.message() or str(e)
            except Exception as e:  # noqa: BLE001 - socket, gevent and gRPC failures alike
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if attempt < self.retries:
                log.warning("%s on %s failed (try %d of %d): %s", what, self.url, attempt + 1, self.retries + 1, last)
        raise ServerError(f"the GACN server at {self.url} did not answer ({what}): {last}")

    def _is_batched(self, model: str) -> bool:
        if model not in self._batched:
            if self._grpc:
                cfg = self._call("model config", lambda: self._client.get_model_config(
                    model, as_json=True, client_timeout=self.timeout))["config"]
            else:
                cfg = self._call("model config", lambda: self._client.get_model_config(model))
            self._batched[model] = int(cfg.get("max_batch_size", 0)) > 0
        return self._batched[model]

    def _infer(self, model: str, inputs: dict, outputs: Sequence[str], parameters: dict) -> dict:
        tc = self._tc
        batch = self._is_batched(model)

        def request():
            tensors = []
            for name, x in inputs.items():
                x = np.ascontiguousarray(x[None] if batch else x)
                t = tc.InferInput(name, list(x.shape), "UINT16" if x.dtype == np.uint16 else "UINT8")
                if self._grpc:
                    t.set_data_from_numpy(x)
                else:
                    t.set_data_from_numpy(x, binary_data=True)
                tensors.append(t)
            wanted = [tc.InferRequestedOutput(n) if self._grpc else tc.InferRequestedOutput(n, binary_data=True)
                      for n in outputs]
            extra = {"client_timeout": self.timeout} if self._grpc else {}
            res = self._client.infer(model, tensors, outputs=wanted, parameters=parameters or None, **extra)
            return {n: res.as_numpy(n) for n in outputs}

        out = self._call(f"inference on {model}", request)
        return {k: v[0] if batch else v for k, v in out.items()}

    # -- Fuser's interface ---------------------------------------------------------------------
    def fuse(self, a, b, *, maps: bool = False, align: str = "none") -> FusionResult:
        """Fuse two sources (uint8/uint16, H x W or H x W x 3); D and M on request."""
        a, b = np.asarray(a), np.asarray(b)
        model = model_name(PAIR, a.dtype)
        outputs = ["FUSED", "DECISION", "MASK"] if maps else ["FUSED"]
        params = {"align": align} if align != "none" else {}
        out = self._infer(model, {"A": _hwc(a), "B": _hwc(b)}, outputs, params)
        return FusionResult(out["FUSED"].reshape(a.shape), out.get("DECISION"), out.get("MASK"))

    def check_pair(self, metas, names: Sequence[str] = ("source A", "source B"), *, maps: bool = False) -> None:
        """As Fuser.check_pair before any pixel is decoded, less the memory plan (the server's)."""
        from engine.preprocess import check_source_metas
        check_source_metas(metas, names)

    def fuse_stack(self, frames: Iterable[np.ndarray], *, strategy: str | None = None, align: str = "auto",
                   names: Sequence[str] | None = None, crop: bool = False, reference=None) -> StackResult:
        """Send the frames as one N x H x W x C tensor; see engine.fusion.fuse_stack.
        ``names`` name the frames in this side's messages; the server's name them by index."""
        from engine.preprocess import check_sources
        frames = [np.asarray(f) for f in frames]
        if len(frames) < 2:
            raise InputError(f"a focus stack needs at least 2 frames, got {len(frames)}")
        # one tensor needs one size and type: the same check (and message) as a local stack
        frames = check_sources(frames, list(names) if names else [f"frame {i}" for i in range(len(frames))])
        params = {"align": align, "crop": bool(crop)}
        if strategy is not None:
            params["strategy"] = strategy
        if reference is not None:
            params["reference"] = str(reference)
        out = self._infer(model_name(STACK, frames[0].dtype), {"FRAMES": np.stack([_hwc(f) for f in frames])},
                          ["FUSED", "INDEX"], params)
        fused = out["FUSED"]
        return StackResult(fused[..., 0] if frames[0].ndim == 2 else fused, out["INDEX"], len(frames))

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a client whose server is gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _hwc(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x
