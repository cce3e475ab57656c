"""Markdown to HTML with raw HTML disabled: card details and rule texts hold patient-supplied strings."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

# "js-default": CommonMark with tables, raw HTML off; links are validated (no javascript:, vbscript:,
# file: or data: other than images), and a URL is never made from bare text.
_RENDERER = MarkdownIt("js-default")


def to_html(markdown: str) -> Markup:
    """Safe HTML for ``markdown``: any HTML in it is escaped, never interpreted."""
    return Markup(_RENDERER.render(markdown))
