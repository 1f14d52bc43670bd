"""gacn-fuse --stacks-dir / --pairs-dir: a batch in this process or on a Dask cluster (--dask)."""
from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from pathlib import Path

from engine import batch

log = logging.getLogger("gacn-fuse")


def fuser_options(args) -> dict:
    if args.server:
        return dict(server=args.server, server_timeout=args.timeout, server_retries=args.retries)
    return dict(backend=args.backend, weights=args.weights, onnx=args.onnx, engine=args.engine,
                precision=args.precision, threads=args.threads, max_memory=args.max_memory, tile=args.tile,
                device=args.device)


def check_batch_args(args, parser) -> None:
    """The options only a batch takes, and the batch options a batch refuses."""
    is_batch = bool(args.pairs_dir or args.stacks_dir)
    for option in ("dask", "overwrite"):
        if getattr(args, option) and not is_batch:
            parser.error(f"--{option} applies to --pairs-dir/--stacks-dir only")
    if args.stacks_dir and (args.stack or args.stream or args.demo or args.sources):
        parser.error("--stacks-dir goes alone or with --pairs-dir")
    if args.dask:
        batch.parse_address(args.dask)


def run_batch(args, progress) -> int:
    """Jobs from the folders, then the cluster (a bad address writes nothing), then the jobs;
    OUTPUT/report.json; each failure named; exit 2 when any job failed."""
    jobs = []
    if args.stacks_dir:
        jobs += batch.stack_jobs(args.stacks_dir, args.output, strategy=args.strategy, align=args.align,
                                 crop=args.crop, index_map=args.index_map, reference=args.reference)
    if args.pairs_dir:
        jobs += batch.pair_jobs(args.pairs_dir, args.output, align=args.align)
    out = Path(args.output)
    todo = len(batch.to_run(jobs, args.overwrite))
    unit = "job" if args.pairs_dir and args.stacks_dir else "pair" if args.pairs_dir else "stack"
    use_dask = args.dask and todo   # a rerun with nothing to do starts no cluster
    try:
        with (batch.cluster(args.dask, max_memory=args.max_memory) if use_dask else nullcontext()) as client, \
                progress(todo, f"{unit}s", args.quiet, unit=unit) as bar:
            report = batch.run(jobs, client, overwrite=args.overwrite, report=out / "report.json",
                               on_done=lambda rec: bar.update(), **fuser_options(args))
    except KeyboardInterrupt:
        if (out / "report.json").is_file():   # the workers have stopped now: count what they finished
            batch.settle_report(out / "report.json")
        raise
    for rec in report.failed:
        print(f"gacn-fuse: error: {rec['name']}: {rec['error']}", file=sys.stderr)
    log.info("%s; report: %s", report.summary(), out / "report.json")
    return 2 if report.failed else 0
