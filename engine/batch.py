"""Batch jobs: directories of focus stacks and pairs, fused in this process or on a Dask cluster.

A job names its input files and its output; whoever runs it (this process, or a Dask worker
reading the same paths from a shared filesystem) reads the inputs, fuses them with a Fuser it
builds once for the batch's options and keeps (one per process), and writes the output
atomically, so an output that exists is complete: a rerun skips it (``overwrite`` redoes it).
Image data never passes through the Dask scheduler; what comes back is a small record per job
(seconds, frames, worker, tries, error) for ``report.json``.

Faults: a job's bad input (GacnError) fails that job with the message a single run gives; an
unexpected exception is retried (Dask's ``retries``); a job whose worker dies is rescheduled
by Dask, and after ``distributed.scheduler.allowed-failures`` deaths (default 3) fails alone
with KilledWorker. ``tries`` counts the job's runs that started (each logs a Dask event).

Dask is the optional extra ``[dask]`` (``distributed``), imported only when a cluster is used.
"""
from __future__ import annotations

import collections
import inspect
import json
import logging
import os
import re
import resource
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from engine import strategies
from engine.atomic import leftovers
from engine.errors import GacnError, InputError
from engine.imageio import (LOSSLESS_8BIT, LOSSLESS_16BIT, check_index_map, check_output_image, image_meta,
                            make_output_dir, read_image, write_bytes_atomic, write_image, write_index_map)
from engine.stream_cli import IMAGE_EXTS, natural_key

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0     # seconds to reach an existing scheduler
WORKER_BASE = 1 << 30      # a worker's runtime (Python, Dask, OpenVINO, the model) beside its --max-memory
INDEX_MAP_EXTS = (".npy", *LOSSLESS_16BIT, *LOSSLESS_8BIT)


@dataclass(frozen=True)
class Job:
    """One output from its inputs: a pair (two files) or a focus stack (its frames in order).

    ``align`` None means a single run's default (auto for a stack, none for a pair). A job with
    ``error`` set was refused when it was found (a pair missing its partner) and runs nothing."""
    name: str
    kind: str                      # "pair" | "stack"
    inputs: tuple[str, ...]
    output: str
    strategy: str = strategies.DEFAULT
    align: str | None = None
    crop: bool = False
    index_map: str | None = None
    error: str | None = None
    reference: str | int | None = None

    @property
    def needs_fuser(self) -> bool:
        return self.kind == "pair" or self.strategy not in strategies.NETWORK_FREE

    def done(self) -> bool:
        """Its outputs exist; they are written atomically (the index map first), so they are complete."""
        return Path(self.output).is_file() and (self.index_map is None or Path(self.index_map).is_file())


def stack_jobs(stacks_dir, output_dir, *, strategy: str = strategies.DEFAULT, align: str | None = None,
               crop: bool = False, index_map: str | None = None, reference=None) -> list[Job]:
    """A job per subfolder of ``stacks_dir`` (its image files in natural order, see natural_key)
    writing ``output_dir/<subfolder>.png``; ``index_map`` (an extension, ".npy" or a lossless
    image format) adds ``output_dir/<subfolder>_index<ext>``. A folder with no stack, or a stack
    of fewer than 2 frames, is refused."""
    src = Path(stacks_dir)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    strategies.check(strategy)
    from engine.align import reference_index
    from engine.fusion import stack_reference
    ref = stack_reference(reference, strategy, align or "auto")
    if index_map is not None and index_map.lower() not in INDEX_MAP_EXTS:
        raise InputError(f"index map format '{index_map}': give one of {', '.join(INDEX_MAP_EXTS)}",
                         cli_message=f"--index-map with --stacks-dir takes a format, one of {', '.join(INDEX_MAP_EXTS)}; "
                                     f"got '{index_map}'")
    out = Path(output_dir)
    jobs = []
    for sub in sorted((d for d in src.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key):
        frames = sorted((f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS
                         and not f.name.startswith(".")), key=natural_key)
        if len(frames) < 2:
            raise InputError(f"{sub}: a focus stack needs at least 2 frames, got {len(frames)}")
        if reference is not None:
            reference_index(ref, len(frames))
        jobs.append(Job(sub.name, "stack", tuple(map(str, frames)), str(out / f"{sub.name}.png"), strategy, align, crop,
                        str(out / f"{sub.name}_index{index_map}") if index_map else None, reference=reference))
    if not jobs:
        raise InputError(f"{src}: no stack (a subfolder of image files) in it")
    return jobs


def pair_jobs(pairs_dir, output_dir, *, align: str | None = None) -> list[Job]:
    """A job per NAME_1.* / NAME_2.* in ``pairs_dir`` writing ``output_dir/NAME.png``; a NAME
    missing its partner is a failed job (named in the report), the others run."""
    src = Path(pairs_dir)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    groups: dict[str, dict[str, str]] = {}
    for f in sorted(src.iterdir()):
        m = re.fullmatch(r"(.+)_([12])\.[^.]+", f.name)
        if m and f.is_file():
            groups.setdefault(m.group(1), {})[m.group(2)] = str(f)
    if not groups:
        raise InputError(f"{src}: no NAME_1.*/NAME_2.* files")
    out = Path(output_dir)
    return [Job(name, "pair", tuple(g[k] for k in sorted(g)), str(out / f"{name}.png"), align=align,
                error=None if len(g) == 2 else f"missing NAME_{'2' if '1' in g else '1'}.*")
            for name, g in groups.items()]


def check_jobs(jobs: Sequence[Job]) -> None:
    """Each job is a pair of 2 files or a stack of at least 2, and every output path is written by
    one job only."""
    seen: dict[str, str] = {}
    for job in jobs:
        if job.kind not in ("pair", "stack"):
            raise InputError(f"job '{job.name}': kind '{job.kind}'; give 'pair' or 'stack'")
        if not job.error and (len(job.inputs) != 2 if job.kind == "pair" else len(job.inputs) < 2):
            raise InputError(f"job '{job.name}': a {job.kind} of {len(job.inputs)} files")
        for path in filter(None, (job.output, job.index_map)):
            key = os.path.realpath(path)
            if key in seen:
                raise InputError(f"{path}: written by both '{seen[key]}' and '{job.name}'; rename one")
            seen[key] = job.name


# -- running one job, where it runs (this process or a Dask worker) ----------------------------

_EVENTS = "gacn-batch-runs-"     # the Dask event topic, per batch, where each run of a job is logged
_fuser_lock = threading.Lock()   # one job at a time per process: the Fuser uses every core it is given
_fuser: dict = {"key": None, "fuser": None}


def _options_key(options: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in options.items()))


def make_fuser(options: dict, progress=None):
    """The fuser ``options`` describe (check_fuser_options' keys): an engine.client.RemoteFuser
    for ``server`` (jobs read and written here, fused there), else a Fuser."""
    if "server" in options:
        from engine.client import RemoteFuser
        given = {k: options[f"server_{k}"] for k in ("timeout", "retries") if options.get(f"server_{k}") is not None}
        return RemoteFuser(options["server"], **given)
    from engine.fusion import Fuser
    return Fuser(**options, progress=progress)


def _cached_fuser(options: dict):
    """This process's Fuser for ``options``, built on first use and kept; other options replace it."""
    key = _options_key(options)
    if _fuser["key"] != key:
        release_fuser()
        _fuser["fuser"] = make_fuser(options)
        _fuser["key"] = key
    return _fuser["fuser"]


def release_fuser() -> None:
    """Close this process's cached Fuser, if any."""
    fuser, _fuser["fuser"], _fuser["key"] = _fuser["fuser"], None, None
    if fuser is not None:
        fuser.close()


def _dask_worker():
    """The Dask worker running this, else None (distributed is never imported for a run here)."""
    if "distributed" in sys.modules:
        from distributed import get_worker
        try:
            return get_worker()
        except ValueError:
            pass
    return None


def _started(worker) -> str:
    """This run's worker name; on Dask, an event that counts the job's runs (its tries)."""
    if worker is None:
        return f"{socket.gethostname()}:{os.getpid()}"
    key = worker.get_current_task()
    if isinstance(key, tuple) and str(key[0]).startswith("gacn-batch-"):   # submitted by run()
        worker.log_event(_EVENTS + key[0], key[1])
    return worker.address


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # KiB on Linux


def _fuse_pair(job: Job, fuser) -> int:
    from engine.preprocess import check_sources
    a, b = check_sources([read_image(p) for p in job.inputs], list(job.inputs))
    check_output_image(job.output, a.dtype)
    write_image(job.output, fuser.fuse(a, b, align=job.align or "none").fused, announce=False)
    return 2


def fuse_stack_files(paths: Sequence[str], output, index_map, fuse: Callable):
    """A stack from its files (gacn-fuse --stack, a batch's stack job): the outputs checked before
    any frame is read (the first frame's bit depth decides what they must hold), ``fuse`` called
    on the frames (engine.imageio.ImageFiles: read ahead, while a frame is fused), the index map
    written before the image (an existing image means both are complete). Returns fuse's StackResult."""
    from engine.imageio import ImageFiles
    _, dtype = image_meta(paths[0])
    check_output_image(output, dtype)
    if index_map:
        check_index_map(index_map, len(paths))
    res = fuse(ImageFiles(paths))
    if index_map:
        write_index_map(index_map, res.index)
    write_image(output, res.fused, announce=False)
    return res


def _fuse_stack(job: Job, fuser) -> int:
    """As ``gacn-fuse --stack`` (frames read twice when the reference is not the first)."""
    from engine.fusion import fuse_stack
    options = dict(strategy=job.strategy, align=job.align or "auto", names=list(job.inputs), crop=job.crop,
                   reference=job.reference)
    return fuse_stack_files(job.inputs, job.output, job.index_map,
                            lambda frames: fuser.fuse_stack(frames, **options) if fuser else
                            fuse_stack(frames, pipeline=None, **options)).frames


def _remove_leftovers(job: Job) -> None:
    """Temporary files beside this job's outputs left by an earlier run of it that was killed
    while it wrote (engine.atomic.leftovers)."""
    for out in filter(None, (job.output, job.index_map)):
        for tmp in leftovers(out):
            tmp.unlink(missing_ok=True)


def execute(job: Job, fuser_options: dict) -> dict:
    """Run one job here and return its record; its bad input is the record's ``error`` (the
    message a single run gives), anything else is raised (for Dask to retry)."""
    with _fuser_lock:
        t = time.perf_counter()
        record = {"worker": _started(_dask_worker()), "frames": len(job.inputs)}
        try:
            _remove_leftovers(job)
            fuser = _cached_fuser(fuser_options) if job.needs_fuser else None
            record["frames"] = (_fuse_pair if job.kind == "pair" else _fuse_stack)(job, fuser)
            record["status"], record["error"] = "fused", None
        except GacnError as e:
            record["status"], record["error"] = "failed", e.cli_message
        record["seconds"] = round(time.perf_counter() - t, 3)
        record["peak_rss_mib"] = _peak_rss_mib()
        return record


# -- the batch ----------------------------------------------------------------------------------

@dataclass
class Report:
    """Per job its inputs, output, status (fused, skipped, failed, interrupted), seconds, frames,
    worker, tries and error; per worker its jobs, seconds and peak RSS."""
    jobs: list[dict]
    seconds: float = 0.0
    workers: dict = field(default_factory=dict)
    started: float = 0.0   # Unix time

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.jobs if r["status"] in ("failed", "interrupted")]

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.jobs)

    def summary(self) -> str:
        where = f" on {len(self.workers)} worker{'s' * (len(self.workers) != 1)}" if self.workers else ""
        return (f"{len(self.jobs)} jobs: {self.count('fused')} fused, {self.count('skipped')} skipped, "
                f"{self.count('failed')} failed" + (f", {self.count('interrupted')} interrupted" * bool(self.count('interrupted')))
                + f" in {self.seconds:.1f} s{where}")

    def save(self, path) -> None:
        data = {"summary": self.summary(), "started": self.started, "seconds": round(self.seconds, 3),
                "workers": self.workers, "jobs": self.jobs}
        write_bytes_atomic(path, (json.dumps(data, indent=1) + "\n").encode())

    def _add_worker(self, rec: dict) -> None:
        w = self.workers.setdefault(rec["worker"], {"jobs": 0, "seconds": 0.0, "peak_rss_mib": 0.0})
        w["jobs"] += 1
        w["seconds"] = round(w["seconds"] + (rec.get("seconds") or 0), 3)
        w["peak_rss_mib"] = max(w["peak_rss_mib"], rec.get("peak_rss_mib") or 0)


def check_fuser_options(options: dict, local: bool) -> None:
    """Refuse an option the Fuser does not take, or one its backend cannot use, before any job
    runs: in this process (``local``) or with a named backend, as the Fuser itself checks them
    (engine.options.backend_options); with backend "auto" on a cluster the workers resolve the
    backend, so only what holds for every backend (the size, the tile). With ``server`` (a GACN
    server's URL), only the client's ``server_timeout`` and ``server_retries``
    (engine.client.RemoteFuser's timeout and retries) go along."""
    from engine.fusion import Fuser
    if "server" in options:
        unknown = sorted(set(options) - {"server", "server_timeout", "server_retries"})
        if unknown:
            raise InputError(f"with server= the server's options decide; refused: {', '.join(unknown)}")
        return
    known = set(inspect.signature(Fuser.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown Fuser option{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    from engine.options import backend_options, check_common
    backend = options.get("backend", "auto")
    if local or backend != "auto":
        from engine.backends.base import resolve_backend
        backend_options(resolve_backend(backend, options.get("engine")),
                        **{k: v for k, v in options.items() if k not in ("backend", "progress")})
    else:
        check_common(options.get("max_memory"), options.get("tile"))


def to_run(jobs: list[Job], overwrite: bool) -> list[int]:
    """The indices of the jobs a run fuses: not refused, and not done unless ``overwrite``."""
    return [i for i, job in enumerate(jobs) if not job.error and (overwrite or not job.done())]


def run(jobs: Iterable[Job], client=None, *, overwrite: bool = False, retries: int = 2, report=None,
        on_done: Callable[[dict], None] | None = None, **fuser_options) -> Report:
    """Run ``jobs``: in this process (one Fuser, loaded once) when ``client`` is None, else as
    Dask tasks on ``client``'s workers (each keeps one Fuser; they read and write the paths).

    Jobs whose outputs exist are skipped unless ``overwrite``. ``retries``: Dask's, for an
    unexpected exception. ``report``: a path for the report as JSON (written atomically, also
    when interrupted). ``on_done(record)`` is called as each job ends (a progress bar).
    ``fuser_options`` go to ``Fuser`` (backend, weights, onnx, engine, precision, threads,
    max_memory, tile, device), or name a GACN server (``server``, ``server_timeout``,
    ``server_retries``: engine.client.RemoteFuser) that fuses each job read and written here."""
    jobs = list(jobs)
    check_jobs(jobs)
    check_fuser_options(fuser_options, local=client is None)
    records = [{"name": j.name, "kind": j.kind, "inputs": list(j.inputs), "output": j.output, "index_map": j.index_map,
                "status": "interrupted", "seconds": None, "frames": len(j.inputs), "worker": None, "tries": 0,
                "error": None} for j in jobs]
    pending = to_run(jobs, overwrite)
    runs = set(pending)
    for i, job in enumerate(jobs):
        if job.error:
            records[i].update(status="failed", error=job.error)
        elif i not in runs:
            records[i]["status"] = "skipped"
    for folder in sorted({str(Path(j.output).parent) for j in jobs}):
        make_output_dir(folder)
    result = Report(records, started=time.time())
    t = time.perf_counter()

    def finish(i: int, rec: dict) -> None:
        records[i].update(rec)
        result._add_worker(records[i])
        if on_done:
            on_done(records[i])

    try:
        if client is None:
            try:
                for i in pending:
                    finish(i, {**execute(jobs[i], fuser_options), "tries": 1})
            finally:
                release_fuser()
        else:
            for i, n in _run_on(client, jobs, pending, finish, fuser_options, retries).items():
                records[i]["tries"] = n
    finally:
        result.seconds = time.perf_counter() - t
        _settle(records, result.started)
        if report is not None:
            result.save(report)
    return result


def _settle(records: list[dict], started: float) -> None:
    """Interrupted jobs whose outputs were written since ``started`` (by a worker that finished
    after the interrupt) are fused; the others say so."""
    for rec in records:
        if rec["status"] == "interrupted":
            outputs = [p for p in (rec["output"], rec["index_map"]) if p]
            if all(os.path.isfile(p) and os.stat(p).st_mtime >= started for p in outputs):
                rec.update(status="fused", error=None, tries=None)
            else:
                rec["error"] = "interrupted before it finished"


def settle_report(path) -> None:
    """Rewrite a report saved at an interrupt once the workers have stopped (see _settle)."""
    data = json.loads(Path(path).read_text())
    _settle(data["jobs"], data["started"])
    report = Report(data["jobs"], data["seconds"], data["workers"], data["started"])
    report.save(path)


def _run_on(client, jobs, pending, finish, fuser_options, retries) -> dict[int, int]:
    """Submit the pending jobs to ``client``, finish each as it ends; their tries by job index."""
    distributed = import_distributed()
    batch = f"gacn-batch-{uuid.uuid4().hex}"   # one task group: queued on the scheduler, not sent ahead to workers
    futures = {client.submit(execute, jobs[i], fuser_options, key=(batch, i), retries=retries, pure=False): i
               for i in pending}
    try:
        for fut in distributed.as_completed(futures):
            i = futures[fut]
            try:
                rec = fut.result()
            except distributed.KilledWorker as e:
                rec = {"status": "failed", "worker": e.last_worker.address,
                       "error": f"its worker died {e.allowed_failures + 1} times while it ran "
                                f"(out of memory, or killed): given up"}
            except Exception as e:  # noqa: BLE001 - after its retries: this job fails, the batch goes on
                log.debug("job %s", jobs[i].name, exc_info=True)
                rec = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            finish(i, rec)
        runs = collections.Counter(msg for _, msg in client.get_events(_EVENTS + batch))
        return {i: runs[i] for i in pending}
    finally:
        client.cancel(list(futures))


# -- clusters -----------------------------------------------------------------------------------

def import_distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("Dask is not installed: pip install 'gacn-engine[dask]' (or 'dask[distributed]')") from None
    return distributed


def parse_address(address: str) -> tuple[str, object]:
    """``local:N`` -> ("local", N); ``tcp://HOST:PORT`` (or another Dask protocol) -> ("remote", address)."""
    m = re.fullmatch(r"local:(-?\d+)", address)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise InputError(f"{address}: a local cluster needs at least 1 worker, got {n}",
                             cli_message=f"--dask {address}: a local cluster needs at least 1 worker, got {n}")
        return "local", n
    if re.fullmatch(r"(tcp|tls|ws|wss|ucx)://[^/\s]+:\d+", address):
        return "remote", address
    raise InputError(f"{address}: give local:N or tcp://HOST:PORT",
                     cli_message=f"--dask {address}: give local:N (N worker processes here) or tcp://HOST:PORT (a scheduler)")


def dask_setup(worker) -> None:
    """In a worker of ``cluster("local:N")`` (a Dask preload): Ctrl-C in the terminal reaches the
    whole process group, but the workers are stopped by the cluster's close, not by SIGINT (which
    would print a traceback per worker)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def cluster(address: str, *, max_memory=None, timeout: float | None = None) -> Iterator:
    """A Dask client for ``address`` (see parse_address), closed on exit; ``local:N`` starts a
    LocalCluster of N single-threaded worker processes on 127.0.0.1 (no dashboard), each limited
    to ``max_memory`` (default 2G) plus WORKER_BASE (over it, the nanny restarts the worker and
    its job is rescheduled), and closes it on exit, Ctrl-C included. Scripts that use it need the
    ``if __name__ == "__main__":`` guard (the workers are spawned processes)."""
    kind, value = parse_address(address)
    distributed = import_distributed()
    import dask
    if kind == "remote":
        try:
            client = distributed.Client(value, timeout=timeout or CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise InputError(f"{value}: no Dask scheduler answers ({e})",
                             cli_message=f"--dask {value}: no Dask scheduler answers there ({type(e).__name__})") from None
        with client:
            yield client
        return
    from engine.memory import HOST_DEFAULT, parse_size
    limit = (parse_size(max_memory) if max_memory is not None else HOST_DEFAULT) + WORKER_BASE
    config = {"distributed.scheduler.worker-saturation": 1.0,   # a job goes to a worker when it can run it
              "distributed.worker.preload": [__name__],          # dask_setup above, in every worker
              "distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    environ = dict(os.environ)   # Dask's nannies set OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ... here
    with dask.config.set(config):
        quiet, level = logging.getLogger("distributed"), logging.getLogger("distributed").level
        quiet.setLevel(logging.ERROR)   # the scheduler runs here: its INFO lines are not ours to print
        try:   # the scheduler's HTTP routes (health, metrics) on a free loopback port; no dashboard
            lc = distributed.LocalCluster(n_workers=value, processes=True, threads_per_worker=1, host="127.0.0.1",
                                          dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                                          memory_limit=limit, silence_logs=logging.ERROR)
        except BaseException:
            quiet.setLevel(level)
            _restore_environ(environ)
            raise
    try:
        with distributed.Client(lc) as client:
            yield client
    finally:
        lc.close()
        quiet.setLevel(level)
        _restore_environ(environ)


def _restore_environ(saved: dict) -> None:
    """This process's environment as it was: what the workers were started with is theirs alone
    (OMP_NUM_THREADS=1 here would slow every runtime the caller uses after the batch)."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
