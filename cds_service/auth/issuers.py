"""Trusted CDS clients (EHRs) and their keys' sources, from the trusted-issuers file (format in
``cds_service/auth_data/trusted-issuers.example.yaml``)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_ALGORITHMS = ("ES384", "RS384")
ACCEPTABLE_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
DEMO_ISSUERS_FILE = Path(__file__).resolve().parent.parent / "auth_data" / "demo-issuers.yaml"
"""The CDS Hooks sandbox and naltrexone-cds's demo client: demos only, their private keys are public."""


class IssuerConfigError(ValueError):
    """The trusted-issuer configuration cannot be used."""


# --- configuration -------------------------------------------------------------------------------


def _is_acceptable_key_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class TrustedIssuer:
    """One CDS client we accept tokens from, and where its public keys come from."""

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jku_allowlist: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    demo_only: bool = False
    fhir_servers: tuple[str, ...] = ()
    """FHIR base URLs this client's requests may name as ``fhirServer`` (none given: its ``iss``, as
    Epic's ``iss`` is its FHIR base URL). A caller cannot make the service query any other host."""

    @property
    def allowed_fhir_servers(self) -> tuple[str, ...]:
        return self.fhir_servers or (self.iss,)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise IssuerConfigError(f"trusted issuer {self.iss!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not self.iss:
            problems.append("iss must not be empty")
        if self.jwks_url is not None and self.jwks_file is not None:
            problems.append("give jwks_url or jwks_file, not both")
        if self.jwks_url is None and self.jwks_file is None and not self.jku_allowlist:
            problems.append("needs a key source: jwks_url, jwks_file or a jku_allowlist")
        urls = [*self.jku_allowlist, *([self.jwks_url] if self.jwks_url else []), *self.fhir_servers]
        problems += [
            f"{url!r} must be https (http only on loopback)"
            for url in urls
            if not _is_acceptable_key_url(url)
        ]
        refused = sorted(set(self.algorithms) - ACCEPTABLE_ALGORITHMS)
        if refused or not self.algorithms:
            problems.append(
                f"algorithms must be among {sorted(ACCEPTABLE_ALGORITHMS)}, not {refused or '[]'}"
            )
        if self.tenants is not None and not self.tenants:
            problems.append("tenants, when given, must list at least one tenant")
        return problems


_ISSUER_FIELDS = {
    "iss",
    "jwks_url",
    "jwks_file",
    "jku_allowlist",
    "tenants",
    "algorithms",
    "demo_only",
    "fhir_servers",
}


def _string_list(entry: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IssuerConfigError(f"{name} of issuer {entry.get('iss')!r} must be a list of strings")
    return tuple(value)


def _issuer_from_entry(entry: object, base_dir: Path) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"each issuer must be a mapping, not {entry!r}")
    unknown = sorted(set(entry) - _ISSUER_FIELDS)
    if unknown:
        raise IssuerConfigError(f"issuer {entry.get('iss')!r} has unknown fields {unknown}")
    iss, jwks_url, jwks_file = entry.get("iss"), entry.get("jwks_url"), entry.get("jwks_file")
    if (
        not isinstance(iss, str)
        or not isinstance(jwks_url, str | None)
        or not isinstance(jwks_file, str | None)
    ):
        raise IssuerConfigError(f"iss, jwks_url and jwks_file of {entry!r} must be strings")
    if not isinstance(entry.get("demo_only", False), bool):
        raise IssuerConfigError(f"demo_only of issuer {iss!r} must be true or false")
    return TrustedIssuer(
        iss=iss,
        jwks_url=jwks_url,
        jwks_file=None if jwks_file is None else base_dir / jwks_file,
        jku_allowlist=_string_list(entry, "jku_allowlist") or (),
        tenants=_string_list(entry, "tenants"),
        algorithms=_string_list(entry, "algorithms") or DEFAULT_ALGORITHMS,
        demo_only=entry.get("demo_only", False),
        fhir_servers=_string_list(entry, "fhir_servers") or (),
    )


def load_trusted_issuers(path: Path) -> tuple[TrustedIssuer, ...]:
    """Read a trusted-issuer file (format in the module docstring); ``.json`` is JSON, else YAML."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise IssuerConfigError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {error}"
        ) from error
    if (
        not isinstance(document, dict)
        or set(document) != {"issuers"}
        or not isinstance(document["issuers"], list)
    ):
        raise IssuerConfigError(f"{path} must hold exactly one key, 'issuers', listing the issuers")
    issuers = tuple(_issuer_from_entry(entry, path.parent) for entry in document["issuers"])
    names = [issuer.iss for issuer in issuers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise IssuerConfigError(f"{path} lists issuers more than once: {duplicates}")
    if not issuers:
        raise IssuerConfigError(f"{path} lists no issuers")
    return issuers
