"""How facts are written on a card: names, dates, counts. Shared by every domain's placeholders."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta


def names(items: Iterable[str], limit: int = 2) -> str:
    """ "a, b and 3 more": record names, each shortened, duplicates once."""
    unique = list(dict.fromkeys(short(n) for n in items))
    if not unique:
        return "none"
    shown = ", ".join(unique[:limit])
    return shown if len(unique) <= limit else f"{shown} and {len(unique) - limit} more"


def short(name: str, limit: int = 50) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def day(value: date | None) -> str:
    return value.isoformat() if value else "unknown date"


def since(today: date, days: int) -> str:
    """The first day of a look-back of ``days`` days."""
    return (today - timedelta(days=days)).isoformat()
