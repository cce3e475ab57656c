"""Starting the real ``naltrexone-cds serve`` (gunicorn) in a subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound here, never
    listened on, so no other program can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """One running server; its combined log output is kept in ``log_path``."""

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str] | None = None,
        workers: int = 2,
        *,
        authenticated: bool = False,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [str(Path(sys.executable).with_name("naltrexone-cds")), "serve", "--port", str(self.port)]
        command += ["--workers", str(workers)]
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env={
                **os.environ,
                **({} if authenticated else {"NALTREXONE_CDS_ALLOW_UNAUTHENTICATED": "true"}),
                # metrics are recorded but not served unless a test asks: no fixed port shared by servers
                "NALTREXONE_CDS_METRICS_PORT": "0",
                **(env or {}),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready in {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def stop(self) -> None:
        terminate_group(self.process)
        self._log.close()


def clean_environ() -> dict[str, str]:
    """This process's environment without any NALTREXONE_CDS_* setting (the service's defaults)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("NALTREXONE_CDS_")}


def terminate_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM a process started with ``start_new_session`` and its children; SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def untroubled_server(directory: Path) -> Iterator[LiveServer]:
    """A server with its own SQLite audit database in ``directory``, which must log no traceback by the
    time it is stopped (for tests that throw bad input at it)."""
    server = LiveServer(
        directory / "server.log", env={"NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{directory}/audit.sqlite3"}
    )
    try:
        yield server
        assert "Traceback" not in server.logs(), server.logs()[-3000:]
    finally:
        server.stop()
