"""The advertised services, their prefetch templates, and mistakes in services.yaml refused at start-up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cds_service.knowledge.services import ServiceConfigError, load_services
from cds_service.resources import default_rules_dir


def edited_services(tmp_path: Path, edit: object) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules)
    data = yaml.safe_load((rules / "services.yaml").read_text(encoding="utf-8"))
    assert callable(edit)
    edit(data)
    (rules / "services.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return rules


def test_each_hook_has_its_service_with_the_same_prefetch() -> None:
    services = load_services(default_rules_dir())
    assert {s.id: s.hook for s in services.values()} == {
        "naltrexone-order-select": "order-select",
        "naltrexone-order-sign": "order-sign",
        "naltrexone-medication-prescribe": "medication-prescribe",
    }
    prefetches = [service.discovery_entry()["prefetch"] for service in services.values()]
    assert all(prefetch == prefetches[0] for prefetch in prefetches)


def test_templates_are_rendered_from_the_hook_context() -> None:
    templates = {t.key: t for t in load_services(default_rules_dir())["naltrexone-order-sign"].prefetch}
    patient = templates["patient"]
    assert patient.render({"patientId": "123"}) == "Patient/123"
    assert patient.resource_type == "Patient" and not patient.is_search and not patient.required
    labs = templates["labResults"]
    assert labs.render({"patientId": "123"}) == "Observation?patient=123&category=laboratory"
    assert labs.is_search and labs.required and labs.domain == "observations"


def test_every_template_belongs_to_a_declared_domain_with_a_title() -> None:
    service = load_services(default_rules_dir())["naltrexone-order-select"]
    domains = {d.name: d for d in service.domains}
    for template in service.prefetch:
        assert domains[template.domain].title


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["services"][0].update(hook="patient-view"), "hook 'patient-view'"),
        (lambda d: d["prefetch"]["conditions"].update(domain="imaging"), "domain 'imaging' is not declared"),
        (lambda d: d["domains"]["allergies"].update(gap="maybe"), "gap 'maybe'"),
        (
            lambda d: d["prefetch"]["conditions"].update(query="Condition?patient={{context.mrn}}"),
            "not one the service can fill",
        ),
        (lambda d: d["services"].append(dict(d["services"][0])), "service ids must be unique"),
        (lambda d: d.pop("domains"), "domains"),
    ],
)
def test_a_broken_services_file_is_refused_with_the_reason(
    tmp_path: Path, edit: object, message: str
) -> None:
    with pytest.raises(ServiceConfigError, match=message):
        load_services(edited_services(tmp_path, edit))
