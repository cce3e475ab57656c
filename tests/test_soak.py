"""The soak (issue 16): the fixture mix with authentication on, at 70% of the capacity measured first, for a
minute in the suite (``SOAK_SECONDS`` for longer; ``python -m benchmarks.soak --seconds 600`` by hand, see
docs/reliability.md). Nothing may fail, no worker may be replaced, worker memory must stay flat after the
warm-up, and the tail must not drift."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.soak import soak

pytestmark = [pytest.mark.soak, pytest.mark.live]


def test_a_minute_at_70_percent_of_capacity_with_authentication_on(tmp_path: Path) -> None:
    result = soak(float(os.environ.get("SOAK_SECONDS", "60")), 0.7, tmp_path)
    summary = result.as_dict()
    assert result.requests > 0.5 * result.target_per_s * result.seconds, summary  # the load was applied
    assert result.errors == 0, summary
    assert result.worker_restarts == 0, summary
    assert result.rss_growth_pct < 5.0, summary
    # the same p99 at the end as at the start, give or take a shared machine's noise
    assert result.last_window["p99_ms"] <= 2 * result.first_window["p99_ms"] + 5, summary
