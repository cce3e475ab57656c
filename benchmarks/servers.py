"""Starting the servers under test as separate process groups on free loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ServerKind = Literal["service", "floor"]
WorkerClass = Literal["sync", "gthread"]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerSpec:
    kind: ServerKind
    worker_class: WorkerClass = "sync"
    workers: int | None = None
    """None: the production default (``NALTREXONE_CDS_WORKERS`` unset, i.e. two per core)."""
    label: str | None = None
    """Name of this server in results (default: kind-worker_class)."""
    root: Path | None = None
    """Source tree to serve (default: the one holding this harness), e.g. a clone at another commit."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment of this server only (e.g. a NALTREXONE_CDS_* setting being compared)."""

    @property
    def expected_workers(self) -> int:
        from cds_service.settings import Settings

        return self.workers or Settings(workers=0).effective_workers

    @property
    def name(self) -> str:
        return self.label or f"{self.kind}-{self.worker_class}"

    def command(self, port: int) -> list[str]:
        if self.kind == "service":
            # the console script of the environment running the benchmark: `naltrexone-cds serve`
            command = [str(Path(sys.executable).with_name("naltrexone-cds")), "serve"]
        else:
            command = [sys.executable, "-m", "benchmarks.floor"]
        command += ["--port", str(port), "--worker-class", self.worker_class]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        return command


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: Any = field(repr=False)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configured(self) -> dict[str, Any]:
        """The service's start-up log line (settings as it runs with them), or {} for the floor."""
        for entry in self.log_entries():
            if entry.get("message") == "naltrexone-cds configured":
                settings: dict[str, Any] = entry.get("settings", {})
                return settings
        return {}

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in self.log_entries():
            message = str(entry.get("message", ""))
            if message.startswith("Booting worker with pid"):
                pids.append(int(message.rsplit(" ", 1)[-1]))
        return pids

    def log_entries(self) -> list[dict[str, Any]]:
        self._log.flush()
        entries = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return entries

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def start(spec: ServerSpec, log_dir: Path, env: dict[str, str] | None = None) -> RunningServer:
    """Launch a server and wait until every worker has booted."""
    return start_all([spec], log_dir, env)[0]


def start_all(
    specs: list[ServerSpec], log_dir: Path, env: dict[str, str] | None = None
) -> list[RunningServer]:
    """Launch several servers at once (their start-ups overlap), then wait for each."""
    servers: list[RunningServer] = []
    try:
        for spec in specs:
            servers.append(_launch(spec, log_dir, env))
        for server in servers:
            _wait_until_ready(server)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _launch(spec: ServerSpec, log_dir: Path, env: dict[str, str] | None) -> RunningServer:
    port = free_port()
    log_path = log_dir / f"{spec.name}.log"
    log = log_path.open("wb")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NALTREXONE_CDS_")}
    # metrics are recorded as in production, and served on a port of this server's own
    environment["NALTREXONE_CDS_METRICS_PORT"] = str(free_port())
    environment.update(env or {})
    # a setting may name the server's own port (e.g. the public URL a JWT's audience must equal)
    environment.update({name: value.replace("{port}", str(port)) for name, value in spec.env})
    root = spec.root or ROOT
    # the served tree first (its cds_service shadows the installed one), then the harness (benchmarks.floor)
    paths = [str(root), str(ROOT), environment.get("PYTHONPATH")]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    process = subprocess.Popen(
        spec.command(port),
        cwd=root,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole, never by name
    )
    return RunningServer(spec, port, log_path, process, log)


def _wait_until_ready(server: RunningServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.spec.name} exited with {server.process.returncode}:\n"
                + server.log_path.read_text(errors="replace")[-4000:]
            )
        # every worker booted, so the first measured requests do not wait for a fork
        if _health(server) and len(server.worker_pids()) >= server.spec.expected_workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.spec.name} did not become ready in {timeout} s")


def _health(server: RunningServer) -> bool:
    try:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=1.0)
        connection.request("GET", "/health")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except OSError:
        return False
