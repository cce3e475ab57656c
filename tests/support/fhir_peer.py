"""Starting the in-memory FHIR R4 test server (``tests/support/fhir_server``) in a subprocess for tests.

The server is Medplum's FHIR router over an in-memory repository, behind a small ``node:http``
wrapper; see ``tests/support/fhir_server/README.md`` for what it supports and its limits. It needs Node
(20 with ``--experimental-websocket``, or 22+) and, the first time, ``npm ci`` from the registry.

    server = FhirTestServer(env={"FHIR_REQUIRE_TOKEN": "abc"})
    server.load({"resourceType": "Patient", "id": "pat1"})
    httpx.get(f"{server.url}/Patient/pat1", headers={"Authorization": "Bearer abc"})
    server.received_authorization()  # ["Bearer abc"]
    server.stop()
"""

from __future__ import annotations

import fcntl
import functools
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

from tests.support.live import terminate_group

FHIR_SERVER_DIR = Path(__file__).with_name("fhir_server")
_INSTALLED_MARKERS = (
    FHIR_SERVER_DIR / "node_modules" / ".package-lock.json",  # written by npm when an install completes
    FHIR_SERVER_DIR / "node_modules" / "@medplum" / "fhir-router" / "package.json",
)


def node_executable() -> str | None:
    """The ``node`` on PATH, or None (callers may skip tests that need it)."""
    return shutil.which("node")


def ensure_node_modules(timeout: float = 600.0) -> None:
    """Runs ``npm ci`` in tests/support/fhir_server once, if its node_modules is missing or incomplete."""
    if all(marker.is_file() for marker in _INSTALLED_MARKERS):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is not on PATH; cannot install {FHIR_SERVER_DIR / 'node_modules'}")
    # Parallel test processes must not run npm ci in the same folder at once.
    lock_path = Path(tempfile.gettempdir()) / "naltrexone-cds-fhir-server-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if all(marker.is_file() for marker in _INSTALLED_MARKERS):
                return
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=FHIR_SERVER_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"npm ci failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.cache
def _node_flags(node: str) -> tuple[str, ...]:
    """``@medplum/core`` needs a global WebSocket: a flag on Node 20/21, built in from Node 22."""
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    return ("--experimental-websocket",) if major < 22 else ()


def as_bundle(resources_or_bundle: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A Bundle or a single resource as it is; a sequence of resources as a collection Bundle."""
    if isinstance(resources_or_bundle, Mapping):
        return dict(resources_or_bundle)
    entries = [{"resource": dict(resource)} for resource in resources_or_bundle]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class FhirTestServer:
    """One running FHIR test server on a free loopback port; its stderr is kept in ``log_path``.

    ``fixtures`` are JSON files (a Bundle of any type, or one resource) loaded at start-up and again
    on :meth:`reset`. ``env`` is added to the environment, e.g. ``{"FHIR_REQUIRE_TOKEN": "abc"}``
    to make every request but OPTIONS and ``/metadata`` need ``Authorization: Bearer abc``.
    """

    def __init__(
        self,
        fixtures: Sequence[Path | str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        node = node_executable()
        if node is None:
            raise RuntimeError("node is not on PATH; the FHIR test server needs Node 20+")
        ensure_node_modules()
        self._own_log = log_path is None  # a temporary log is deleted by stop()
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="fhir-test-server-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [node, *_node_flags(node), "server.js", "0", *(str(Path(f).resolve()) for f in fixtures)]
        self.process = subprocess.Popen(
            command,
            cwd=FHIR_SERVER_DIR,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        # Never leave a node process behind, even if stop() is not called.
        weakref.finalize(self, _kill_group, self.process)
        self.port = self._wait_until_listening(timeout)
        self.url = f"http://127.0.0.1:{self.port}"
        # One client for the helper's own calls: httpx.get() and friends build a new SSL context each time.
        self._http = httpx.Client(base_url=self.url, timeout=30.0)

    def _wait_until_listening(self, timeout: float) -> int:
        """The server prints ``LISTENING <port>`` on stdout once it accepts connections."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:  # EOF: the process exited
                self.process.wait(timeout=5)
                self._fail(f"FHIR test server exited with {self.process.returncode}")
            line += chunk
            if b"\n" in line:
                first = line.split(b"\n", 1)[0].decode()
                if not first.startswith("LISTENING "):
                    self._fail(f"unexpected first line from the FHIR test server: {first!r}")
                return int(first.split()[1])
        self._fail(f"FHIR test server did not start in {timeout} s")

    def _fail(self, message: str) -> NoReturn:
        terminate_group(self.process)
        logs = self.logs()
        self.stop()
        raise RuntimeError(f"{message}:\n{logs}")

    def __enter__(self) -> FhirTestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def logs(self) -> str:
        """What the server wrote to stderr (empty once a temporary log was removed by stop())."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def load(self, resources_or_bundle: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Uploads a Bundle (transaction, batch, collection...), one resource or a list of resources.

        Resources with an id keep it; urn:uuid references between entries are resolved. Goes to the
        test-only ``/__test__/load`` endpoint, so it needs no token and is not recorded. Returns the
        transaction-response Bundle; raises if any entry failed.
        """
        response = self._http.post("/__test__/load", json=as_bundle(resources_or_bundle))
        if response.status_code != 200:
            raise RuntimeError(f"loading into the FHIR test server failed: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def received_authorization(self) -> list[str]:
        """The Authorization header values received so far, in order (requests without one are left out)."""
        values: list[str] = self._http.get("/__test__/received-authorization").json()
        return values

    def requests(self) -> list[dict[str, Any]]:
        """Every request received so far (but OPTIONS): ``{"method", "path", "authorization" or None}``."""
        recorded: list[dict[str, Any]] = self._http.get("/__test__/requests").json()
        return recorded

    def clear_received(self) -> None:
        """Forgets the recorded requests and Authorization headers."""
        self._http.delete("/__test__/received-authorization").raise_for_status()

    def reset(self) -> None:
        """Drops all data and recorded requests, then reloads the start-up fixtures."""
        self._http.post("/__test__/reset").raise_for_status()

    def stop(self) -> None:
        if getattr(self, "_http", None) is not None:
            self._http.close()
        terminate_group(self.process)
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()
        if not self._log.closed:
            self._log.close()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
