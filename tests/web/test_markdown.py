"""Markdown from rules and cards becomes HTML that cannot carry markup of its own."""

from __future__ import annotations

from cds_service.web.markdown import to_html


def test_raw_html_is_shown_as_text_never_interpreted() -> None:
    rendered = str(to_html('**Why:** <script>alert(1)</script> <img src=x onerror="alert(2)">'))
    assert "<script>" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered and "<strong>Why:</strong>" in rendered


def test_script_links_are_not_links() -> None:
    for url in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,<b>x</b>",
    ):
        assert "href" not in str(to_html(f"[click]({url})")), url
    assert 'href="https://example.org/a"' in str(to_html("[label](https://example.org/a)"))


def test_tables_and_lists_render() -> None:
    rendered = str(to_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two"))
    assert "<table>" in rendered and "<li>one</li>" in rendered
