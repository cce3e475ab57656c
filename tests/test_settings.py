from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.settings import Settings, SettingsError


def test_defaults_serve_locally() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.worker_class) == ("127.0.0.1", 8000, "sync")
    assert settings.effective_workers >= 2
    assert settings.cors_origins == ("*",)
    assert (settings.audit_retention_days, settings.feedback_retention_days) == (90, 6 * 365)


def test_environment_variables_are_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "NALTREXONE_CDS_PORT": "9000",
            "NALTREXONE_CDS_WORKERS": "3",
            "NALTREXONE_CDS_CORS_ORIGINS": "https://a.example, https://b.example",
            "NALTREXONE_CDS_RULES_DIR": "/srv/rules",
            "NALTREXONE_CDS_HOST": "",  # empty means unset
        }
    )
    assert settings.port == 9000 and settings.workers == 3
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.rules_dir == Path("/srv/rules")
    assert settings.host == "127.0.0.1"


def test_flags_override_the_environment() -> None:
    settings = Settings.from_env({"NALTREXONE_CDS_PORT": "9000"}, port=9100, host=None)
    assert settings.port == 9100


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NALTREXONE_CDS_PORT": "eighty"}, "NALTREXONE_CDS_PORT='eighty' is not a valid int"),
        ({"NALTREXONE_CDS_PORT": "0"}, "port must be 1-65535"),
        ({"NALTREXONE_CDS_WORKER_CLASS": "eventlet"}, "worker_class must be sync or gthread"),
        ({"NALTREXONE_CDS_MAX_BODY_BYTES": "10"}, "max_body_bytes must be at least 1024"),
        ({"NALTREXONE_CDS_CORS_ORIGINS": " , "}, "cors_origins must name at least one origin"),
        ({"NALTREXONE_CDS_LOG_LEVEL": "LOUD"}, "is not a logging level"),
        ({"NALTREXONE_CDS_AUDIT_RETENTION_DAYS": "0"}, "audit_retention_days must be 1-36500"),
        (
            {"NALTREXONE_CDS_AUDIT_RETENTION_DAYS": "400", "NALTREXONE_CDS_FEEDBACK_RETENTION_DAYS": "365"},
            r"feedback_retention_days \(365\) must be at least audit_retention_days \(400\)",
        ),
    ],
)
def test_bad_values_are_refused_with_the_reason(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_describe_holds_what_start_up_logs_show() -> None:
    described = Settings(workers=3).describe()
    assert described["workers"] == 3
    assert described["rules_dir"].endswith("rules")
