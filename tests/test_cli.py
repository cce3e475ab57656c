"""The ``naltrexone-cds`` command: its subcommands exist, and bad settings are a usage error, not a trace."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cds_service.cli import main
from cds_service.facts.reference import BEGIN, END


def test_every_subcommand_is_there_with_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in (
        "serve",
        "evaluate",
        "lint",
        "check",
        "report",
        "migrate",
        "prune",
        "demo-token",
        "vocabulary",
    ):
        assert command in result.output


def test_a_bad_setting_is_a_usage_error_naming_the_variable() -> None:
    result = CliRunner().invoke(main, ["report"], env={"NALTREXONE_CDS_PORT": "not-a-port"})
    assert result.exit_code == 2
    assert "NALTREXONE_CDS_PORT" in result.output


def test_demo_token_prints_a_jwt_for_the_url() -> None:
    result = CliRunner().invoke(main, ["demo-token", "http://127.0.0.1:8000/cds-services"])
    assert result.exit_code == 0
    assert result.output.count(".") == 2


def test_vocabulary_rewrites_only_the_marked_block_of_a_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Rules\n\nbefore\n\n{BEGIN}\nstale\n{END}\n\nafter\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["vocabulary", "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    text = readme.read_text(encoding="utf-8")
    assert "stale" not in text and text.startswith("# Rules\n\nbefore") and text.endswith("after\n")
    assert "| `opioid_active` |" in text and "| `{earliest_start}` |" in text
    assert CliRunner().invoke(main, ["vocabulary"]).output in text


def test_vocabulary_refuses_a_readme_without_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Rules\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["vocabulary", "--readme", str(readme)])
    assert result.exit_code == 2 and "vocabulary:begin" in result.output
    assert readme.read_text(encoding="utf-8") == "# Rules\n"
