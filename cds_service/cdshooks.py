"""The CDS Hooks 2.0.1 objects the service produces, as frozen types.

The pipeline builds these; only the transports (``api.encode``, the ``evaluate`` command) turn them into
JSON, with every optional field that has no value left out (CDS Hooks forbids ``null`` and empty values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Hook = Literal["order-select", "order-sign", "medication-prescribe"]
HOOKS: tuple[Hook, ...] = get_args(Hook)

Indicator = Literal["critical", "warning", "info"]
INDICATORS: tuple[Indicator, ...] = get_args(Indicator)
"""Most severe first: the order cards are sorted in."""

ActionType = Literal["create", "update", "delete"]
SelectionBehavior = Literal["at-most-one", "any"]
LinkType = Literal["absolute", "smart"]


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    label: str
    url: str | None = None
    topic: Coding | None = None


@dataclass(frozen=True, slots=True)
class Action:
    type: ActionType
    description: str
    resource: Mapping[str, Any] | None = None
    """The whole FHIR resource to create, or to update (CDS Hooks sends the whole resource)."""
    resource_id: str | None = None
    """``Type/id`` of the resource to delete."""


@dataclass(frozen=True, slots=True)
class Suggestion:
    label: str
    uuid: str
    actions: tuple[Action, ...]
    is_recommended: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str
    type: LinkType = "absolute"


@dataclass(frozen=True, slots=True)
class Card:
    uuid: str
    summary: str
    indicator: Indicator
    source: Source
    detail: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    override_reasons: tuple[Coding, ...] = ()
    links: tuple[Link, ...] = ()

    @property
    def selection_behavior(self) -> SelectionBehavior | None:
        """CDS Hooks requires one when there are suggestions; ours are alternatives to choose from."""
        return "at-most-one" if self.suggestions else None

    @property
    def rule_id(self) -> str:
        """The rule that made the card (``source.topic.code``)."""
        return self.source.topic.code if self.source.topic else ""


@dataclass(frozen=True, slots=True)
class CdsResponse:
    cards: tuple[Card, ...] = ()
    deviations: tuple[str, ...] = ()
    """The request-shape deviations tolerated (for the log line; not part of the JSON answer)."""
