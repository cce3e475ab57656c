"""A deliberately bad FHIR server: slow, failing, unauthorised, or answering garbage, by URL prefix.

``http://127.0.0.1:<port>/<mode>/`` is a FHIR base whose every query behaves per ``mode``:
``slow`` (answers after ``SLOW_SECONDS``), ``500``, ``401``, ``403``, ``garbage`` (not JSON),
``not-fhir`` (JSON that is no resource), ``foreign-next`` (a page whose next link is on another host),
``ok`` (an empty searchset); and the transport faults: ``reset`` (reads the request, then resets the
connection), ``hangup`` (reads the request, then closes without a word), ``huge`` (a valid searchset of
``HUGE_BYTES``, with its Content-Length), ``huge-unsized`` (the same without a length: read to the close),
``trickle`` (a valid searchset whose bytes come one every ``TRICKLE_INTERVAL`` for ``TRICKLE_SECONDS``);
and compressed answers: ``gzip-bomb`` (250 kB of gzipped zeros that expand to 256 MiB), ``gzip-twice`` (the
same gzipped again, ``Content-Encoding: gzip, gzip``), ``gzip-huge``
(the huge searchset gzipped, under the size limit until decompressed), ``gzip-ok`` (an empty searchset).

``FaultServer`` runs in the calling process; ``fault_server_process`` runs one in a child process, so that
a test timing the service is not slowed by the bad server sharing its interpreter (its GIL).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLOW_SECONDS = 2.0
HUGE_BYTES = 40 * 1024 * 1024
TRICKLE_INTERVAL = 0.05
TRICKLE_SECONDS = 20.0
_SEARCHSET_HEAD = b'{"resourceType": "Bundle", "type": "searchset", "entry": ['


_EMPTY_SEARCHSET = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'


@functools.cache
def gzip_bomb() -> bytes:
    """About 250 kB that are 256 MiB of zeros once decompressed (compressed a MiB at a time)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header
    block = b"\0" * (1 << 20)
    return b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()


@functools.cache
def gzip_huge() -> bytes:
    """The 40 MB searchset, gzipped to well under the 8 MiB limit."""
    return gzip.compress(huge_searchset(), compresslevel=6)


@functools.cache
def huge_searchset() -> bytes:
    """A valid FHIR searchset of about ``HUGE_BYTES``: laboratory Observations, all alike."""
    entry = json.dumps(
        {
            "fullUrl": "http://fault.example.org/fhir/Observation/alt",
            "resource": {
                "resourceType": "Observation",
                "id": "alt",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6", "display": "ALT"}]},
                "subject": {"reference": "Patient/fault"},
                "effectiveDateTime": "2020-01-01",
                "valueQuantity": {"value": 20, "unit": "U/L"},
            },
        }
    ).encode()
    count = HUGE_BYTES // (len(entry) + 2)
    return _SEARCHSET_HEAD + b", ".join([entry] * count) + b"]}"


class _Handler(BaseHTTPRequestHandler):
    server: FaultServer

    def do_GET(self) -> None:
        mode = self.path.strip("/").split("/", 1)[0]
        self.server.hits.append((mode, self.headers.get("Authorization")))
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
            self._json(200, {"resourceType": "Bundle", "type": "searchset"})
        elif mode in ("500", "401", "403"):
            self._json(
                int(mode), {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
            )
        elif mode == "reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif mode == "hangup":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif mode == "gzip-bomb":
            self._send(200, gzip_bomb(), "application/fhir+json", encoding="gzip")
        elif mode == "gzip-twice":
            self._send(200, gzip.compress(gzip_bomb()), "application/fhir+json", encoding="gzip, gzip")
        elif mode == "gzip-huge":
            self._send(200, gzip_huge(), "application/fhir+json", encoding="gzip")
        elif mode == "gzip-ok":
            self._send(200, gzip.compress(_EMPTY_SEARCHSET), "application/fhir+json", encoding="gzip")
        elif mode == "huge":
            self._send(200, huge_searchset(), "application/fhir+json")
        elif mode == "huge-unsized":
            self._stream([huge_searchset()])
        elif mode == "trickle":
            self._stream(self._trickle())
        elif mode == "garbage":
            self._send(200, b"<html>definitely not FHIR</html>", "text/html")
        elif mode == "not-fhir":
            self._json(200, {"hello": "world"})
        elif mode == "foreign-next":
            self._json(
                200,
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "link": [{"relation": "next", "url": "http://elsewhere.example.org/fhir/page2"}],
                },
            )
        else:
            self._json(200, {"resourceType": "Bundle", "type": "searchset"})

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/fhir+json")

    def _send(self, status: int, body: bytes, content_type: str, encoding: str | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its time budget ran out): expected in the slow mode

    @staticmethod
    def _trickle() -> Iterator[bytes]:
        yield _SEARCHSET_HEAD
        stop = time.monotonic() + TRICKLE_SECONDS
        while time.monotonic() < stop:
            time.sleep(TRICKLE_INTERVAL)
            yield b" "
        yield b"]}"

    def _stream(self, parts: Iterator[bytes] | list[bytes]) -> None:
        """A 200 with no Content-Length (HTTP/1.0: the body ends when the connection closes)."""
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            for part in parts:
                self.wfile.write(part)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client does

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True
    # every query of a request connects at once (13 and more); the default backlog of 5 would drop
    # connections, which the client retries only a second later: a fault of the test server's own
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[tuple[str, str | None]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def base(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@contextlib.contextmanager
def fault_server_process() -> Iterator[Callable[[str], str]]:
    """A ``FaultServer`` in a child process; yields its ``base(mode)``. Stopped when the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fault_fhir"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())

        def base(mode: str) -> str:
            return f"http://127.0.0.1:{port}/{mode}"

        yield base
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()  # the child's signal to stop
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()


def _main() -> None:
    """Serves until standard input closes; prints the port first (once the big answers are built, so that
    building them costs no request its time budget)."""
    huge_searchset(), gzip_huge(), gzip_bomb()
    server = FaultServer()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    _main()
