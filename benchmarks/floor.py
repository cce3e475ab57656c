"""The floor: the service's own server stack answering a trivial endpoint.

Same gunicorn configuration as ``naltrexone-cds serve`` (the service's ``GunicornServer``, with the same
settings, worker count and worker class) and the same Flask, but the app behind it only parses the JSON
body and answers ``{"cards": []}``. The gap between the two is what the service's own work costs.

    python -m benchmarks.floor --port 8100 [--workers N] [--worker-class sync|gthread]
"""

from __future__ import annotations

import argparse

from flask import Flask, Response, jsonify, request

from cds_service.server import GunicornServer
from cds_service.settings import Settings


def create_floor_app() -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        request.get_json(force=True)  # parse the whole body, as the service must, then answer nothing
        return jsonify({"cards": []})

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok", "floor": True})

    return app


class FloorServer(GunicornServer):
    """The service's gunicorn application with the floor app in place of the service."""

    def load(self) -> Flask:
        if self.application is None:
            self.application = create_floor_app()
        return self.application


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
    )
    FloorServer(settings).run()


if __name__ == "__main__":
    main()
