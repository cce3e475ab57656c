"""Whether a URL lies inside a base URL: the one comparison every allowlist of URLs uses.

A plain ``startswith`` would let ``https://ehr.example.org.evil.test`` pass for ``https://ehr.example.org``
and ``https://ehr.example.org/fhir-evil`` for ``https://ehr.example.org/fhir``: scheme, host and port must
be equal, and the path must continue the base's path at a ``/``.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def within(url: str, base: str) -> bool:
    try:
        target, prefix = urlsplit(url.strip()), urlsplit(base.strip())
        target_port, prefix_port = target.port, prefix.port
    except ValueError:
        return False
    if not target.scheme or not target.hostname:
        return False
    if (target.scheme.lower(), target.hostname, target_port) != (
        prefix.scheme.lower(),
        prefix.hostname,
        prefix_port,
    ):
        return False
    base_path = prefix.path.rstrip("/") + "/"
    return (target.path.rstrip("/") + "/").startswith(base_path)


def within_any(url: str, bases: tuple[str, ...]) -> bool:
    return any(within(url, base) for base in bases)
