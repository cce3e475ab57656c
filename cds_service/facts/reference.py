"""rules/README.md's reference tables, written from the domains' declarations (never by hand).

``naltrexone-cds vocabulary`` prints them; ``--readme rules/README.md`` rewrites the block between the
``<!-- vocabulary:begin -->`` and ``<!-- vocabulary:end -->`` markers, and a test fails when the README
and the declarations disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cds_service.facts import domains
from cds_service.facts.domain import Declared

BEGIN, END = "<!-- vocabulary:begin -->", "<!-- vocabulary:end -->"


def reference_tables() -> str:
    """Markdown: for rule facts, card placeholders and evidence lists, a table of name, meaning, domain."""
    sections = [
        ("Facts a rule can test", "fact", "`{}`", "facts"),
        ("Placeholders in card text", "placeholder", "`{{{}}}`", "placeholders"),
        ("Evidence lists a card can show", "evidence", "`{}`", "evidence_lines"),
    ]
    parts = []
    for title, column, form, attribute in sections:
        rows = [f"### {title}", "", f"| {column} | meaning | domain |", "|---|---|---|"]
        for domain in domains():
            table: Mapping[str, Declared] = getattr(domain, attribute)
            rows += [
                f"| {form.format(name)} | {d.meaning or '—'} | `{domain.name}` |" for name, d in table.items()
            ]
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"


def with_reference_tables(readme: str) -> str:
    """``readme`` with its marked block replaced by the current tables."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    return pattern.sub(lambda _: f"{BEGIN}\n{reference_tables()}{END}", readme)
