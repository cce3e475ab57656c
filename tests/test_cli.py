"""The ``naltrexone-cds`` command: its subcommands exist, and bad settings are a usage error, not a trace."""

from __future__ import annotations

from click.testing import CliRunner

from cds_service.cli import main


def test_every_subcommand_is_there_with_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "evaluate", "report", "migrate", "demo-token"):
        assert command in result.output


def test_a_bad_setting_is_a_usage_error_naming_the_variable() -> None:
    result = CliRunner().invoke(main, ["report"], env={"NALTREXONE_CDS_PORT": "not-a-port"})
    assert result.exit_code == 2
    assert "NALTREXONE_CDS_PORT" in result.output


def test_demo_token_prints_a_jwt_for_the_url() -> None:
    result = CliRunner().invoke(main, ["demo-token", "http://127.0.0.1:8000/cds-services"])
    assert result.exit_code == 0
    assert result.output.count(".") == 2
