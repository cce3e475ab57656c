"""An installed (non-editable) service must find its rules and contract inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_rules_and_openapi(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("naltrexone_cds-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cds_service/_bundled/openapi.yaml" in names
    for path in (ROOT / "rules").rglob("*"):
        if path.is_file():
            assert f"cds_service/_bundled/rules/{path.relative_to(ROOT / 'rules').as_posix()}" in names
