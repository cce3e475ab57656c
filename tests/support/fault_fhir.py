"""A deliberately bad FHIR server: slow, failing, unauthorised, or answering garbage, by URL prefix.

``http://127.0.0.1:<port>/<mode>/`` is a FHIR base whose every query behaves per ``mode``:
``slow`` (answers after ``SLOW_SECONDS``), ``500``, ``401``, ``403``, ``garbage`` (not JSON),
``not-fhir`` (JSON that is no resource), ``foreign-next`` (a page whose next link is on another host),
``ok`` (an empty searchset).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_SECONDS = 2.0


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

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its time budget ran out): expected in the slow mode

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True

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
