"""Whether a URL lies inside a base URL: by scheme, host, port and path segment, never by string prefix."""

from __future__ import annotations

import pytest

from cds_service.urls import within


@pytest.mark.parametrize(
    ("url", "base", "inside"),
    [
        ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir/", "https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir/r4", "https://ehr.example.org/fhir/", True),
        ("https://EHR.example.org/fhir", "https://ehr.example.org", True),
        ("https://ehr.example.org.evil.test/fhir", "https://ehr.example.org", False),
        ("https://ehr.example.org/fhir-evil", "https://ehr.example.org/fhir", False),
        ("https://ehr.example.org:8443/fhir", "https://ehr.example.org/fhir", False),
        ("http://ehr.example.org/fhir", "https://ehr.example.org/fhir", False),
        ("https://user@evil.test/ehr.example.org", "https://ehr.example.org", False),
        ("not a url", "https://ehr.example.org", False),
    ],
)
def test_a_url_is_within_a_base_url_by_host_and_path_segment(url: str, base: str, inside: bool) -> None:
    assert within(url, base) is inside
