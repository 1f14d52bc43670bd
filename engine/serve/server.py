"""gacn-serve: the tritonserver that nvidia-pytriton bundles, on a GACN model repository.

Handles what the bundled server needs to run its Python backend here: the stub built for this
Python is staged in a backend directory of our own, this interpreter's ``LIBDIR`` goes first on
``LD_LIBRARY_PATH`` (else the stub links the system's libpython and dies at start), and this
environment's ``bin`` first on ``PATH`` (the stub's Python finds its packages from there; it
ignores ``PYTHONPATH``). Secure defaults: loopback, ``--model-control-mode none``, the
shared-memory and repository APIs restricted to a header nobody is told.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from engine import __version__
from engine.errors import GacnError
from engine.serve.repository import ModelOptions, add_arguments, options_from_args, write_repository

log = logging.getLogger("gacn-serve")
EXIT_BAD_INPUT = 2
STOP_TIMEOUT = 10.0
SERVE_EXTRA = "pip install 'gacn-engine[serve]'"


class ServeError(GacnError):
    """The server cannot be started: the [serve] extra missing, a port in use, a failed start."""


def triton_dist() -> Path:
    """The tritonserver distribution inside the nvidia-pytriton wheel (not imported: it is large)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServeError(f"gacn-serve needs the [serve] extra (nvidia-pytriton, which bundles tritonserver): {SERVE_EXTRA}")
    dist = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (dist / "bin" / "tritonserver").is_file():
        raise ServeError(f"{dist}: no tritonserver binary in this nvidia-pytriton; reinstall with {SERVE_EXTRA}")
    return dist


def stage_backends(work: Path, dist: Path) -> Path:
    """A backend directory whose python/ holds the bundled backend and the stub for this Python."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServeError(f"nvidia-pytriton has no Triton Python stub for Python {version}")
    target = work / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (target / name).symlink_to(dist / "backends" / "python" / name)
    shutil.copy2(stub, target / "triton_python_backend_stub")
    return work / "backends"


def server_env(dist: Path) -> dict[str, str]:
    """This Python's libpython first, then the wheel's own libraries (the staged stub's RPATH is
    relative to where the wheel put it)."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    wheel_libs = str(dist.parent.parent / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", ""), wheel_libs) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as servers do: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e} (port in use? pick another with "
                             "--http-port/--grpc-port/--metrics-port)") from None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux), so that a
    killed gacn-serve or test leaves no server behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TritonServer:
    """One tritonserver process (and its stubs, in its own process group) on a model repository."""

    def __init__(self, repo, *, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, log_file=None, exit_timeout: int = 5):
        self.repo, self.host = Path(repo), host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.log_file, self.exit_timeout = log_file, exit_timeout
        self.proc: subprocess.Popen | None = None
        self._work: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self._netloc('http')}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._netloc('grpc')}"

    def _netloc(self, what: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.ports[what]}"

    def command(self, backends: Path) -> list[str]:
        token = f"gacn-admin={secrets.token_hex(16)}"  # nobody is told: the restricted APIs are closed
        return [str(triton_dist() / "bin" / "tritonserver"),
                f"--model-repository={self.repo}", f"--backend-directory={backends}",
                "--model-control-mode=none", "--strict-readiness=true", "--disable-auto-complete-config",
                f"--http-address={self.host}", f"--http-port={self.ports['http']}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
                f"--http-restricted-api=shared-memory,model-repository:{token}",
                f"--grpc-restricted-protocol=shared-memory,model-repository:{token}",
                f"--exit-timeout-secs={self.exit_timeout}",
                # room for a few megapixel frames between server and stub without growing in 1 MB steps
                "--backend-config=python,shm-default-byte-size=33554432",
                "--backend-config=python,shm-growth-byte-size=33554432"]

    def start(self) -> "TritonServer":
        dist = triton_dist()
        for port in self.ports.values():
            check_port(self.host, port)
        self._work = Path(tempfile.mkdtemp(prefix="gacn-triton-"))
        out = open(self.log_file, "ab") if self.log_file else None
        try:
            self.proc = subprocess.Popen(self.command(stage_backends(self._work, dist)), env=server_env(dist),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            if out:
                out.close()
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 300.0) -> "TritonServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._cleanup()
                raise ServeError(f"tritonserver exited with code {self.proc.returncode} while starting"
                                 + self._log_tail())
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServeError(f"tritonserver was not ready within {timeout:.0f} s" + self._log_tail())

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log_file or not Path(self.log_file).is_file():
            return ""
        tail = Path(self.log_file).read_text(errors="replace").splitlines()[-lines:]
        return "; its log ends:\n" + "\n".join(tail)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (in-flight requests get ``exit_timeout`` s to finish), then SIGKILL to the whole
        process group if it is still there after ``timeout`` s. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop within %.0f s: killed", timeout)
        self._kill_group()
        self._cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once (a crash, for fault tests)."""
        self._kill_group()
        self._cleanup()

    def _kill_group(self, grace: float = 2.0) -> None:
        """SIGKILL whatever is left of the server's process group (its stubs), and wait up to
        ``grace`` s for the group to empty."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)

    def _cleanup(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gacn-serve", description="Serve GACN on Triton Inference Server (the tritonserver "
                                "bundled with nvidia-pytriton): models gacn, gacn_16 (pairs) and gacn_stack, gacn_stack_16.")
    p.add_argument("--repo", metavar="DIR", help="write the model repository here (default: a temporary folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--ready-timeout", type=float, default=300, metavar="S", help="seconds to wait for the models to load")
    add_arguments(p)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tmp = None
    server = None
    try:
        triton_dist()
        options: ModelOptions = options_from_args(args)
        repo = args.repo or (tmp := tempfile.mkdtemp(prefix="gacn-repo-"))
        write_repository(repo, options, tensorrt_plan=args.tensorrt_plan)
        server = TritonServer(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                              metrics_port=args.metrics_port).start()
        deadline = time.monotonic() + args.ready_timeout
        while not server.ready():
            if stop.is_set() or server.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if server.proc.poll() is not None:
            raise ServeError(f"tritonserver exited with code {server.proc.returncode} while starting (its log is above)")
        if not stop.is_set():
            if not server.ready():
                raise ServeError(f"tritonserver was not ready within {args.ready_timeout:.0f} s")
            print(f"gacn-serve: ready; HTTP {server.url}, gRPC {server.grpc_url}, metrics "
                  f"http://{server._netloc('metrics')}/metrics; models in {repo}. Ctrl-C or SIGTERM stops it.",
                  file=sys.stderr, flush=True)
        while not stop.is_set() and server.proc.poll() is None:
            stop.wait(0.5)
        if server.proc.poll() is not None and not stop.is_set():
            raise ServeError(f"tritonserver exited with code {server.proc.returncode}")
        return 0
    except GacnError as e:
        print(f"gacn-serve: error: {e.cli_message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if server is not None:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
