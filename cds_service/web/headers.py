"""The pages' own security headers (the JSON API's are set in ``api.views``)."""

from __future__ import annotations

from flask import Response

# This service's own scripts, styles and images only; nothing inline, nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def page_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = PAGE_POLICY
    if response.mimetype in ("text/html", "text/css", "application/javascript", "text/javascript"):
        response.headers["Cache-Control"] = "no-cache"
    return response
