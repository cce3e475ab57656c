"""``naltrexone-cds evaluate``: run one CDS Hooks request through the pipeline and show the cards.

For rule authors and integrators: no server, the same code path as the HTTP service.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cds_service.api.encode import response_json
from cds_service.clock import Calendar, utc_now
from cds_service.errors import CdsError
from cds_service.pipeline import Pipeline
from cds_service.settings import Settings
from cds_service.validate import decode_json

_WIDTH = 100
_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


class EvaluationFailed(Exception):
    def __init__(self, status: int, outcome: dict[str, Any]) -> None:
        super().__init__(outcome["issue"][0]["diagnostics"])
        self.status = status
        self.outcome = outcome


def evaluate(
    raw: bytes, *, settings: Settings, today: date | None = None, service_id: str | None = None
) -> dict[str, Any]:
    """The service's response to ``raw`` (a request body); raises ``EvaluationFailed`` for a 4xx."""
    moment = datetime.combine(today, datetime.min.time(), UTC).replace(hour=12) if today else None
    calendar = Calendar(ZoneInfo(settings.timezone), (lambda: moment) if moment else utc_now)
    pipeline = Pipeline.from_settings(settings, calendar=calendar)
    try:
        body = decode_json(raw)
        hook = body.get("hook") if isinstance(body, dict) else None
        if service_id:
            service = pipeline.service(service_id)
        elif isinstance(hook, str):
            service = pipeline.service_for_hook(hook)
        else:
            service = pipeline.service("naltrexone-order-select")
        base = settings.public_base_url or f"http://{settings.host}:{settings.port}"
        return response_json(pipeline.run(service, body, rules_url=base.rstrip("/") + "/rules"))
    except CdsError as error:
        raise EvaluationFailed(error.status, error.to_operation_outcome()) from error


def render_text(response: dict[str, Any]) -> str:
    """Cards for a terminal: indicator, rule, summary, the facts behind it, suggestions, source."""
    cards = response["cards"]
    if not cards:
        return "No cards: nothing to flag for the reviewed orders."
    blocks = [_card_text(number, card) for number, card in enumerate(cards, start=1)]
    counts = ", ".join(
        f"{sum(c['indicator'] == i for c in cards)} {i}" for i in ("critical", "warning", "info")
    )
    return "\n\n".join([*blocks, f"{len(cards)} card(s): {counts}."])


def _card_text(number: int, card: dict[str, Any]) -> str:
    rule = card["source"]["topic"]["code"]
    lines = [f"{number}. {card['indicator'].upper():<8} {rule}", *_wrap(card["summary"], "   ")]
    for paragraph in card.get("detail", "").split("\n\n"):
        if paragraph.startswith("**Source:**"):
            continue
        lines.append("")
        lines.extend(_wrap_markdown(paragraph))
    suggestions = card.get("suggestions", [])
    if suggestions:
        lines += ["", f"   Suggestions ({card.get('selectionBehavior', 'any')}):"]
        for suggestion in suggestions:
            flag = " [recommended]" if suggestion.get("isRecommended") else ""
            lines.append(f"   - {suggestion['label']}{flag}")
            lines.extend(f"       {_action_text(action)}" for action in suggestion["actions"])
    source = card["source"]
    lines += ["", *_wrap(f"Source: {source['label']} <{source.get('url', '')}>", "   ")]
    reasons = [reason["display"] for reason in card.get("overrideReasons", [])]
    if reasons:
        lines.extend(_wrap("Override reasons: " + "; ".join(reasons), "   "))
    return "\n".join(lines)


def _action_text(action: dict[str, Any]) -> str:
    if action["type"] == "delete":
        return f"delete {action['resourceId']}: {action['description']}"
    resource = action["resource"]
    target = resource["resourceType"] + (f"/{resource['id']}" if "id" in resource else " (new)")
    return f"{action['type']} {target}: {action['description']}"


def _wrap_markdown(paragraph: str) -> Iterable[str]:
    text = _BOLD.sub(r"\1", _LINK.sub(r"\1 <\2>", paragraph))
    for line in text.split("\n"):
        if line.startswith("- "):
            yield from _wrap(line[2:], "     ", first="   • ")
        else:
            yield from _wrap(line, "   ")


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text, width=_WIDTH, initial_indent=first or indent, subsequent_indent=indent, break_on_hyphens=False
    ) or [indent.rstrip()]


def read_request(path: str) -> bytes:
    import sys

    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
