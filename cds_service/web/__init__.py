"""Pages for people: the rule pages a pharmacy and therapeutics committee reviews and the cards link to
(``/rules``, ``/rules/<id>``, ``/rules.json``) and the demo page (``/demo``).

Server-rendered with Jinja2 (autoescaped); Markdown (the rules' long texts, the cards' details) rendered
with raw HTML disabled; every page gets its own Content-Security-Policy: scripts, styles and images from
this service only, nothing inline, no third-party origin. The JSON API keeps ``default-src 'none'``.
"""

from cds_service.web.pages import register

__all__ = ["register"]
