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
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operations = [
                documented[p]
                for p in documented
                if p == path or (path.endswith("{id}") and p.startswith("/cds-services/"))
            ]
            assert any(method.lower() in op for op in operations), (
                f"{method} {rule.rule} missing from openapi.yaml"
            )


def test_the_readme_layout_matches_the_tree() -> None:
    block = re.search(r"## Layout.*?```\n(.+?)```", README, re.S)
    assert block, "README has no Layout block"
    top: set[str] = set()
    service: set[str] = set()  # names under cds_service/: the indented lines' first word and any module
    for line in block.group(1).splitlines():
        words = line.split()
        if not words:
            continue
        if not line.startswith(" "):
            top.add(words[0])
            section = words[0]
        elif section == "cds_service/":
            if line.startswith("  ") and not line.startswith("   "):
                service.add(words[0])
            service.update(w.strip("(),;:") for w in words if w.strip("(),;:").endswith(".py"))
    for name in top:
        assert (ROOT / name).exists(), f"README layout names {name}, which does not exist"
    for name in service:
        assert (ROOT / "cds_service" / name).exists(), f"README layout names cds_service/{name}: no such file"
    packages = {p.parent.name + "/" for p in (ROOT / "cds_service").glob("*/__init__.py")}
    assert packages <= service, f"cds_service packages missing from the README layout: {packages - service}"
