"""Scenarios about the clients that send the request: older shapes, and orders that name another patient."""

from __future__ import annotations

from fhir_fixtures import clinical as c
from fhir_fixtures.catalogue import add, named, workup
from fhir_fixtures.requests import naltrexone_order


def build_clients() -> None:
    legacy = c.scenario(named(c.medication_request(c.OXYCODONE, authored=-2), "oxycodone-rx-5"), *workup())
    legacy["hook"] = "medication-prescribe"
    legacy["user"] = legacy["context"].pop("userId")
    legacy["context"].pop("selections")
    legacy["context"]["patientId"] = "Patient/" + legacy["context"]["patientId"]
    legacy["context"]["medications"] = [e["resource"] for e in legacy["context"].pop("draftOrders")["entry"]]
    legacy["context"]["prefetch"] = {
        key: {"response": {"status": "200 OK"}, "resource": value}
        for key, value in legacy.pop("prefetch").items()
    }
    add(
        "legacy-client-medication-prescribe",
        "A client still on the deprecated medication-prescribe hook",
        "An older integration sends medication-prescribe: the user at the top level, the draft orders as a list in "
        "context.medications, prefetch inside the context as batch-response entries; oxycodone prescribed 2 days ago.",
        legacy,
        cards={"opioid-active": "critical"},
        quirk="medication-prescribe (pre-1.0 shape, as in HL7's PDDI CDS test requests)",
    )
    elsewhere = c.scenario(
        named(c.medication_request(c.OXYCODONE, authored=-2), "oxycodone-rx-6"),
        order=naltrexone_order(patient_id="pat-tests-2"),
    )
    add(
        "order-for-another-patient",
        "A draft order naming another patient than the chart",
        "The naltrexone order's subject is Patient/pat-tests-2 while the chart open is pat-tests-1 (on oxycodone): "
        "the service says so first, and checks the chart's record.",
        elsewhere,
        cards={"patient-mismatch": "critical", "opioid-active": "critical"},
        quirk="MedicationRequest.subject differs from context.patientId (as in HL7's PDDI warfarin scenarios)",
    )
