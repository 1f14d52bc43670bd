"""Where the GACN checkpoint comes from: --weights, $GACN_WEIGHTS, or a verified download."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from engine.errors import CheckpointError
from engine.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://github.com/Keep-Passion/GACN/raw/master/nets/parameters/GACN.pkl"
OFFICIAL_SHA256 = "08c4c30ebb3fc9050ab9423e2d8c6c70a8c2e95141426f263814ed45727ac352"
OFFICIAL_SIZE = 288_749


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gacn-engine"


# How a caller passes the checkpoint: a Python caller of Fuser, or the command line.
_OPTION = {"python": "weights=", "cli": "--weights"}
_PASS_IT = {"python": "Fuser(weights=PATH)", "cli": "--weights PATH"}


def _manual_hint(caller: str) -> str:
    return (f"Download {OFFICIAL_URL} by hand (sha256 {OFFICIAL_SHA256}) and pass it with "
            f"{_PASS_IT[caller]} or the GACN_WEIGHTS environment variable.")


def _error(make) -> CheckpointError:
    """One CheckpointError worded for both callers: ``make(caller)`` builds each text."""
    return CheckpointError(make("python"), cli_message=make("cli"))


def download_official(dest: Path, url: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch the public checkpoint, refuse it unless its sha256 matches, then publish atomically."""
    import urllib.error  # here, not at the top: urllib.request costs every start ~20 ms (http, ssl)
    import urllib.request
    url = url or os.environ.get("GACN_WEIGHTS_URL", OFFICIAL_URL)
    log.info("downloading the GACN checkpoint from %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read(OFFICIAL_SIZE * 4)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise _error(lambda c: f"no {_OPTION[c]} given and the checkpoint could not be downloaded "
                               f"from {url} ({reason}); you may be offline. {_manual_hint(c)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != OFFICIAL_SHA256:
        raise _error(lambda c: f"the file downloaded from {url} has sha256 {digest}, not the official "
                               f"{OFFICIAL_SHA256}; it was not used. {_manual_hint(c)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest, data)
    return dest


def resolve_weights(path: str | os.PathLike | None = None) -> Path:
    """The checkpoint to use; downloads into the user cache only when nothing was given."""
    explicit = path or os.environ.get("GACN_WEIGHTS")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise _error(lambda c: f"{p}: no such checkpoint file (from "
                                   f"{_OPTION[c] if path else 'GACN_WEIGHTS'})")
        return p
    cached = cache_dir() / "GACN.pkl"
    if cached.is_file():
        if hashlib.sha256(cached.read_bytes()).hexdigest() == OFFICIAL_SHA256:
            return cached
        log.warning("cached checkpoint %s fails its checksum; downloading it again", cached)
    return download_official(cached)
