"""The CDS services this deployment offers, read from ``rules/services.yaml`` at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

Hook = Literal["order-select", "order-sign"]
Domain = Literal["patient", "medications", "conditions", "allergies", "observations"]

DOMAINS: tuple[Domain, ...] = get_args(Domain)
HOOKS: tuple[Hook, ...] = get_args(Hook)

# CDS Hooks 2.0.1 prefetch tokens: a root-level context field or one of the user tokens.
_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_ALLOWED_TOKENS = re.compile(
    r"^(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)$"
)


class ServiceConfigError(ValueError):
    """``services.yaml`` is not usable; raised at start-up, never while serving."""


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    key: str
    query: str
    domain: Domain
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
        templates = tuple(_template(key, spec) for key, spec in data["prefetch"].items())
        services = {
            entry["id"]: ServiceDefinition(
                id=entry["id"],
                hook=_hook(entry["hook"]),
                title=entry["title"],
                description=entry["description"],
                usage_requirements=data["usage_requirements"],
                prefetch=templates,
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


def _template(key: str, spec: dict[str, Any]) -> PrefetchTemplate:
    query = spec["query"]
    for token in _TOKEN.findall(query):
        if not _ALLOWED_TOKENS.match(token):
            raise ServiceConfigError(f"prefetch {key}: token {{{{{token}}}}} is not a CDS Hooks 2.0.1 token")
    domain = spec["domain"]
    if domain not in DOMAINS:
        raise ServiceConfigError(f"prefetch {key}: domain {domain!r} is not one of {DOMAINS}")
    return PrefetchTemplate(key=key, query=query, domain=domain, required=bool(spec.get("required", True)))
