"""The CDS services this deployment offers, read from ``rules/services.yaml`` at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from cds_service.cdshooks import HOOKS, Hook

Gap = Literal["medications", "clinical", "none"]
GAPS: tuple[Gap, ...] = get_args(Gap)

# The CDS Hooks 2.0.1 prefetch tokens that the service can also fill itself when it fetches a missing key
# (fhir_client): a template with any other token would fail while serving, so it is refused at start-up.
_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_ALLOWED_TOKENS = re.compile(r"^context\.(patientId|userId|encounterId)$")


class ServiceConfigError(ValueError):
    """``services.yaml`` is not usable; raised at start-up, never while serving."""


@dataclass(frozen=True, slots=True)
class DataDomain:
    """A part of the patient record the prefetch templates fetch, and what its absence means."""

    name: str
    title: str
    """As a card names it: "laboratory results"."""
    gap: Gap
    """medications: opioid-free status unknown; clinical: contraindications may be missed; none: optional."""


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    key: str
    query: str
    domain: str
    required: bool

    @property
    def resource_type(self) -> str:
        return re.split(r"[/?]", self.query, maxsplit=1)[0]

    @property
    def is_search(self) -> bool:
        return "/" not in self.query.split("?", 1)[0]

    def render(self, context: dict[str, str]) -> str:
        """The query with its tokens filled in from the (flat) hook context."""

        def fill(match: re.Match[str]) -> str:
            return context[match.group(1).removeprefix("context.")]

        return _TOKEN.sub(fill, self.query)


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    id: str
    hook: Hook
    title: str
    description: str
    usage_requirements: str
    prefetch: tuple[PrefetchTemplate, ...]
    domains: tuple[DataDomain, ...]

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "usageRequirements": self.usage_requirements,
            "prefetch": {template.key: template.query for template in self.prefetch},
        }


def load_services(rules_dir: Path) -> dict[str, ServiceDefinition]:
    path = rules_dir / "services.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        domains = tuple(_domain(name, spec) for name, spec in data["domains"].items())
        templates = tuple(
            _template(key, spec, {d.name for d in domains}) for key, spec in data["prefetch"].items()
        )
        services = {
            entry["id"]: ServiceDefinition(
                id=entry["id"],
                hook=_hook(entry["hook"]),
                title=entry["title"],
                description=entry["description"],
                usage_requirements=data["usage_requirements"],
                prefetch=templates,
                domains=domains,
            )
            for entry in data["services"]
        }
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ServiceConfigError(f"{path}: {exc!r}") from exc
    if len(services) != len(data["services"]):
        raise ServiceConfigError(f"{path}: service ids must be unique")
    return services


def _hook(value: Any) -> Hook:
    if value not in HOOKS:
        raise ServiceConfigError(f"hook {value!r} is not one of {HOOKS}")
    hook: Hook = value
    return hook


def _domain(name: str, spec: dict[str, Any]) -> DataDomain:
    gap = spec["gap"]
    if gap not in GAPS:
        raise ServiceConfigError(f"domain {name}: gap {gap!r} is not one of {GAPS}")
    return DataDomain(name=name, title=str(spec["title"]), gap=gap)


def _template(key: str, spec: dict[str, Any], domains: set[str]) -> PrefetchTemplate:
    query = spec["query"]
    for token in _TOKEN.findall(query):
        if not _ALLOWED_TOKENS.match(token):
            raise ServiceConfigError(
                f"prefetch {key}: token {{{{{token}}}}} is not one the service can fill "
                "(context.patientId, context.userId or context.encounterId)"
            )
    domain = spec["domain"]
    if domain not in domains:
        raise ServiceConfigError(f"prefetch {key}: domain {domain!r} is not declared under domains")
    return PrefetchTemplate(key=key, query=query, domain=domain, required=bool(spec.get("required", True)))
