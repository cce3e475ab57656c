"""The README and openapi.yaml say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask

from cds_service.contract import openapi_document
from cds_service.settings import documented_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _command_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.+?)\n```", README, re.S)
    assert match, f"README has no {marker} block"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _command_after("test-command")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_serve_command_uses_the_console_script() -> None:
    assert _command_after("serve-command").endswith("naltrexone-cds serve")


def test_every_setting_is_in_the_readme_table() -> None:
    for variable, default, help_text in documented_settings():
        row = f"| `{variable}` | {f'`{default}`' if default else ''} | {help_text} |"
        assert row in README, f"README configuration table lacks or misstates: {row}"


def test_every_route_is_in_openapi(app: Flask) -> None:
    documented = openapi_document()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).replace("{service_id}", "{id}")
        assert path in documented, f"{rule.rule} is not documented in openapi.yaml"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operations = [
                documented[p]
                for p in documented
                if p == path or (path.endswith("{id}") and p.startswith("/cds-services/"))
            ]
            assert any(method.lower() in op for op in operations), (
                f"{method} {rule.rule} missing from openapi.yaml"
            )
