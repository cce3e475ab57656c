"""Writes the fixture scenarios: ``python fhir_fixtures/build.py`` (from the repository root).

Each scenario becomes ``fhir_fixtures/<name>/request.json`` (a complete CDS Hooks request, dated as of
REFERENCE_DATE) and ``expected.json`` (what must come back, and what must not), and a row of the table in
``fhir_fixtures/README.md``. The expectations are written here from the clinical story and the contract —
never copied from the service's output. ``tests/test_fixtures.py`` checks that the files are current.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fhir_fixtures import UNREACHABLE_FHIR_SERVER  # noqa: E402
from fhir_fixtures import clinical as c  # noqa: E402
from fhir_fixtures.catalogue import (  # noqa: E402
    EXAMPLES,
    FIFTY_DAILY_TEST_DOSE,
    FOLLOW_ON,
    GUIDANCE,
    SCENARIOS,
    add,
    delete_draft,
    example,
    named,
    workup,
)
from fhir_fixtures.requests import hook_request, naltrexone_order, sandbox_hook_bodies, searchset  # noqa: E402
from fhir_fixtures.scenarios_cards import build_cards  # noqa: E402
from fhir_fixtures.scenarios_clients import build_clients  # noqa: E402
from fhir_fixtures.scenarios_reading import build_reading  # noqa: E402


def build() -> None:
    # ------------------------------------------------------------------ opioid conflicts
    oxy = named(c.medication_request(c.OXYCODONE, authored=-3, supply_days=30), "oxycodone-rx-1")
    add(
        "opioid-active-prescription",
        "Active oxycodone prescription",
        "Opioid use disorder; oxycodone 5 mg prescribed 3 days ago with a 30-day supply; naltrexone 50 mg daily ordered.",
        c.scenario(oxy, *workup()),
        cards={"opioid-active": "critical"},
        absent=GUIDANCE,
        suggestions=(delete_draft("opioid-active"),),
    )
    add(
        "opioid-in-same-session",
        "Oxycodone in the same order session",
        "A naltrexone order is selected while an oxycodone order sits in the same draft session.",
        c.scenario(*workup(), drafts=[c.opioid_order()]),
        cards={"opioid-active": "critical"},
        absent=GUIDANCE,
    )
    add(
        "opioid-active-methadone-statement",
        "Active methadone statement",
        "The patient reports taking methadone (MedicationStatement status active).",
        c.scenario(named(c.statement(c.METHADONE, start=-200), "methadone-ms-1"), *workup()),
        cards={"opioid-active": "critical"},
        only=True,
    )
    add(
        "opioid-recent-dispense",
        "Oxycodone supply ended 4 days ago",
        "A 7-day oxycodone supply dispensed 10 days ago ended 4 days ago: 10 opioid-free days are needed.",
        c.scenario(named(c.dispense(c.OXYCODONE, handed=-10, days_supply=7), "oxycodone-md-1"), *workup()),
        cards={"opioid-recent": "critical"},
        absent=("opioid-active", *GUIDANCE),
        suggestions=(
            {
                "rule": "opioid-recent",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {
                    "dosageInstruction.0.timing.repeat.boundsPeriod.start": "@+6",
                    "dispenseRequest.validityPeriod.start": "@+6",
                },
            },
        ),
    )
    add(
        "opioid-recent-methadone",
        "Methadone stopped 12 days ago",
        "Methadone (long-acting) taken until 12 days ago: 14 opioid-free days are needed.",
        c.scenario(
            named(c.statement(c.METHADONE, status="completed", start=-300, end=-12), "methadone-ms-2"),
            *workup(),
        ),
        cards={"opioid-recent": "critical"},
        suggestions=(
            {
                "rule": "opioid-recent",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {"dosageInstruction.0.timing.repeat.boundsPeriod.start": "@+2"},
            },
        ),
    )
    add(
        "near-miss-opioid-free-ten-days",
        "Oxycodone supply ended exactly 10 days ago",
        "The last oxycodone supply ended 10 days ago: the opioid-free interval is complete.",
        c.scenario(named(c.dispense(c.OXYCODONE, handed=-19, days_supply=10), "oxycodone-md-2"), *workup()),
        cards={"test-dose": "warning"},
        absent=("opioid-active", "opioid-recent"),
    )
    add(
        "opioid-history-outcome",
        "Pharmacy history failed to load",
        "The EHR could not load dispensing history and sent an OperationOutcome in its place.",
        c.scenario(
            *workup(),
            prefetch_override={
                "medicationDispenses": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "timeout",
                            "diagnostics": "Pharmacy benefit manager timed out",
                        }
                    ],
                }
            },
        ),
        cards={"opioid-history-unverified": "warning"},
    )
    add(
        "near-miss-null-prefetch",
        "No dispenses, statements or administrations on file",
        "The EHR answers null for three medication keys: it has no such data, which is an answer, not a gap.",
        c.scenario(
            *workup(),
            prefetch_override={
                "medicationDispenses": None,
                "medicationStatements": None,
                "medicationAdministrations": None,
            },
        ),
        cards={"test-dose": "warning"},
        absent=("opioid-history-unverified", "patient-data-unverified"),
    )
    add(
        "opioid-withdrawal",
        "Active opioid withdrawal",
        "Opioid dependence with withdrawal (F11.23) is an active problem.",
        c.scenario(
            named(c.condition(c.ICD10, "F11.23", "Opioid dependence with withdrawal", onset=-1), "wd-1"),
            *workup(),
        ),
        cards={"opioid-withdrawal": "critical"},
        absent=("naloxone-challenge-needed", "test-dose"),
        suggestions=(delete_draft("opioid-withdrawal"),),
    )
    add(
        "near-miss-withdrawal-resolved",
        "Withdrawal resolved",
        "An old opioid withdrawal diagnosis is marked resolved.",
        c.scenario(
            named(
                c.condition(
                    c.ICD10, "F11.23", "Opioid dependence with withdrawal", clinical="resolved", onset=-60
                ),
                "wd-2",
            ),
            *workup(),
        ),
        absent=("opioid-withdrawal",),
        cards={"test-dose": "warning"},
    )
    add(
        "contrave-with-active-opioid",
        "Contrave with an active opioid",
        "Naltrexone/bupropion for weight management ordered for a patient taking oxycodone.",
        c.scenario(
            named(c.medication_request(c.OXYCODONE, authored=-2), "oxycodone-rx-2"),
            order=naltrexone_order(medicationCodeableConcept=c.rx(*c.CONTRAVE)),
        ),
        cards={"opioid-active": "critical"},
        only=True,
    )
    add(
        "near-miss-embeda-is-an-opioid",
        "Embeda ordered: an opioid, not naltrexone",
        "Morphine/naltrexone (Embeda) is ordered for a patient not on naltrexone: no naltrexone rule applies.",
        c.scenario(*workup(), order=c.opioid_order(c.EMBEDA)),
        only=True,
    )

    # ------------------------------------------------------------------ urine screens and challenge
    add(
        "uds-positive",
        "Positive urine opioid screen",
        "Opiates screen positive 3 days ago, no naloxone challenge since.",
        c.scenario(named(c.urine_opiates("POS", when=-3), "uds-pos-1"), *workup(uds=False, challenge=False)),
        cards={"uds-positive": "critical"},
        absent=GUIDANCE,
        suggestions=(
            {
                "rule": "uds-positive",
                "type": "create",
                "resourceType": "ServiceRequest",
                "expect": {"code.coding.0.code": "naloxone-challenge"},
            },
            delete_draft("uds-positive"),
        ),
    )
    add(
        "near-miss-uds-positive-then-challenge-passed",
        "Positive screen, then a passed challenge",
        "Opiates screen positive 3 days ago; naloxone challenge passed yesterday (TIP 63, 2021).",
        c.scenario(named(c.urine_opiates("positive", when=-3), "uds-pos-2"), *workup(uds=False)),
        absent=("uds-positive",),
        cards={"test-dose": "warning"},
    )
    add(
        "near-miss-naltrexone-urine-assay",
        "A positive naltrexone assay is not an opioid screen",
        "The urine test positive yesterday is for naltrexone (LOINC 19609-7), expected on treatment.",
        c.scenario(
            named(
                c.observation("19609-7", "Naltrexone [Presence] in Urine", when=-1, valueString="Positive"),
                "ntx-assay-1",
            ),
            *workup(),
        ),
        absent=("uds-positive",),
    )
    add(
        "uds-needed",
        "Opioid use disorder, no urine screen",
        "No urine opioid screen is on record for a patient with opioid use disorder.",
        c.scenario(*workup(uds=False)),
        cards={"uds-needed": "warning"},
        suggestions=(
            {
                "rule": "uds-needed",
                "type": "create",
                "resourceType": "ServiceRequest",
                "expect": {"code.coding.0.code": "19295-5"},
            },
        ),
    )
    add(
        "near-miss-uds-negative-6-days",
        "Negative screen 6 days ago",
        "A negative urine opioid screen 6 days ago counts as recent (7-day window).",
        c.scenario(named(c.urine_opiates("negative", when=-6), "uds-neg-2"), *workup(uds=False)),
        absent=("uds-needed", "uds-positive"),
    )
    add(
        "naloxone-challenge-failed",
        "Failed naloxone challenge",
        "Withdrawal signs during a naloxone challenge yesterday.",
        c.scenario(
            named(c.naloxone_challenge("failed", when=-1), "challenge-failed-1"), *workup(challenge=False)
        ),
        cards={"naloxone-challenge-failed": "critical"},
        absent=("naloxone-challenge-needed", "test-dose"),
        suggestions=(delete_draft("naloxone-challenge-failed"),),
    )
    add(
        "near-miss-challenge-failed-8-days-ago",
        "Challenge failed 8 days ago",
        "A failed challenge 8 days ago is outside the 7-day window; a new challenge is advised.",
        c.scenario(
            named(c.naloxone_challenge("failed", when=-8), "challenge-failed-2"), *workup(challenge=False)
        ),
        cards={"naloxone-challenge-needed": "info"},
        absent=("naloxone-challenge-failed",),
    )

    # ------------------------------------------------------------------ liver
    add(
        "hepatic-contraindication",
        "Acute hepatitis",
        "Acute hepatitis (SNOMED 37871000) is an active problem.",
        c.scenario(named(c.condition(c.SNOMED, "37871000", "Acute hepatitis", onset=-5), "hep-1"), *workup()),
        cards={"hepatic-contraindication": "critical"},
        absent=GUIDANCE,
        suggestions=(delete_draft("hepatic-contraindication"),),
    )
    add(
        "near-miss-hepatitis-refuted",
        "Acute hepatitis ruled out",
        "An acute hepatitis diagnosis was refuted.",
        c.scenario(
            named(c.condition(c.SNOMED, "37871000", "Acute hepatitis", verification="refuted"), "hep-2"),
            *workup(),
        ),
        absent=("hepatic-contraindication",),
    )
    add(
        "hepatic-impairment",
        "Decompensated cirrhosis",
        "Cirrhosis with ascites: decompensated liver disease.",
        c.scenario(
            named(c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver"), "cirrhosis-1"),
            named(c.condition(c.ICD10, "R18.8", "Other ascites"), "ascites-1"),
            *workup(),
        ),
        cards={"hepatic-impairment": "warning"},
    )
    add(
        "near-miss-compensated-cirrhosis",
        "Compensated cirrhosis",
        "Cirrhosis without any sign of decompensation: information (exposure about 5x), not the decompensation warning.",
        c.scenario(
            named(c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver"), "cirrhosis-2"), *workup()
        ),
        cards={"hepatic-impairment": "info"},
        absent=("hepatic-contraindication",),
    )
    add(
        "lft-elevated-warning",
        "ALT 4 times the upper limit",
        "ALT 160 U/L (ULN 40) ten days ago.",
        c.scenario(named(c.alt(160), "alt-high-1"), *workup(lft=False)),
        cards={"lft-elevated": "warning"},
        suggestions=(
            {
                "rule": "lft-elevated",
                "type": "create",
                "resourceType": "ServiceRequest",
                "expect": {"code.coding.0.code": "24325-3"},
            },
        ),
    )
    add(
        "lft-elevated-critical",
        "AST 6 times the upper limit",
        "AST 240 U/L (ULN 40) ten days ago.",
        c.scenario(named(c.ast(240), "ast-high-1"), *workup(lft=False)),
        cards={"lft-elevated": "critical"},
    )
    add(
        "lft-elevated-hys-law",
        "ALT 3 times the upper limit with bilirubin 2.5 times",
        "ALT 120 U/L and total bilirubin 3.0 mg/dL: the pattern of serious liver injury.",
        c.scenario(
            named(c.alt(120), "alt-high-2"), named(c.bilirubin(3.0), "bili-high-1"), *workup(lft=False)
        ),
        cards={"lft-elevated": "critical"},
    )
    add(
        "near-miss-alt-just-below",
        "ALT 2.9 times the upper limit",
        "ALT 116 U/L (ULN 40).",
        c.scenario(named(c.alt(116), "alt-2"), *workup(lft=False)),
        absent=("lft-elevated", "lft-needed"),
    )
    add(
        "lft-needed",
        "No liver tests in 90 days",
        "The last ALT was 120 days ago.",
        c.scenario(named(c.alt(35, when=-120), "alt-old-1"), *workup(lft=False)),
        cards={"lft-needed": "info"},
        suggestions=(
            {
                "rule": "lft-needed",
                "type": "create",
                "resourceType": "ServiceRequest",
                "expect": {"code.coding.0.code": "24325-3"},
            },
        ),
    )

    # ------------------------------------------------------------------ allergy, pregnancy
    add(
        "hypersensitivity",
        "Naltrexone allergy",
        "A confirmed, active allergy to naltrexone.",
        c.scenario(named(c.allergy(c.rx("7243", "naltrexone")), "allergy-1"), *workup()),
        cards={"hypersensitivity": "critical"},
        absent=GUIDANCE,
        suggestions=(delete_draft("hypersensitivity"),),
    )
    add(
        "near-miss-allergy-resolved",
        "Resolved naltrexone allergy",
        "A naltrexone allergy entry marked resolved.",
        c.scenario(named(c.allergy(c.rx("7243", "naltrexone"), clinical="resolved"), "allergy-2"), *workup()),
        absent=("hypersensitivity",),
    )
    add(
        "pregnancy",
        "Pregnancy",
        "Pregnant state (Z33.1) on the problem list.",
        c.scenario(
            named(c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-40), "preg-1"), *workup()
        ),
        cards={"pregnancy": "warning"},
    )
    add(
        "near-miss-old-positive-hcg",
        "Positive hCG 31 days ago",
        "A positive urine hCG 31 days ago is outside the 30-day window and nothing newer says pregnant.",
        c.scenario(
            named(
                c.observation(
                    "2106-3", "Choriogonadotropin [Presence] in Urine", when=-31, valueString="positive"
                ),
                "hcg-1",
            ),
            *workup(),
        ),
        absent=("pregnancy",),
    )

    # ------------------------------------------------------------------ dosing
    add(
        "test-dose",
        "New start for opioid use disorder",
        "Opioid use disorder, fully worked up, no naltrexone in 30 days, 50 mg daily ordered.",
        c.scenario(*workup()),
        cards={"test-dose": "warning"},
        only=True,
        suggestions=(FIFTY_DAILY_TEST_DOSE, FOLLOW_ON),
    )
    add(
        "near-miss-test-dose-alcohol-only",
        "Alcohol use disorder only",
        "Naltrexone 50 mg daily for alcohol dependence; no opioid history.",
        c.scenario(
            named(c.condition(c.ICD10, "F10.20", "Alcohol dependence, uncomplicated"), "aud-1"),
            named(c.alt(30), "alt-3"),
        ),
        only=True,
    )
    add(
        "xr-dose",
        "Extended-release injection at the wrong dose",
        "Naltrexone extended-release 190 mg every 4 weeks.",
        c.scenario(*workup(), order=c.xr_order(190)),
        cards={"xr-dose": "warning"},
        absent=("dose-unrecognized",),
        suggestions=(
            {
                "rule": "xr-dose",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {
                    "dosageInstruction.0.doseAndRate.0.doseQuantity.value": 380,
                    "dosageInstruction.0.timing.repeat.period": 4,
                    "dosageInstruction.0.timing.repeat.periodUnit": "wk",
                },
            },
        ),
    )
    add(
        "near-miss-xr-standard",
        "Extended-release injection 380 mg IM every 4 weeks",
        "A worked-up patient receives the labelled injection regimen.",
        c.scenario(*workup(), order=c.xr_order()),
        only=True,
    )
    add(
        "dose-unrecognized",
        "Oral naltrexone 75 mg daily",
        "75 mg a day matches no labelled regimen.",
        c.scenario(
            *workup(oud=False),
            order=naltrexone_order(
                dosageInstruction=[
                    {
                        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [
                            {"doseQuantity": {"value": 75, "unit": "mg", "system": c.UCUM, "code": "mg"}}
                        ],
                    }
                ]
            ),
        ),
        cards={"dose-unrecognized": "warning"},
    )
    add(
        "near-miss-100mg-every-2-days",
        "Oral naltrexone 100 mg every 2 days",
        "A labelled alternative schedule.",
        c.scenario(
            *workup(oud=False),
            order=naltrexone_order(
                dosageInstruction=[
                    {
                        "timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}},
                        "doseAndRate": [
                            {"doseQuantity": {"value": 100, "unit": "mg", "system": c.UCUM, "code": "mg"}}
                        ],
                    }
                ]
            ),
        ),
        absent=("dose-unrecognized",),
    )
    add(
        "naloxone-rescue",
        "No naloxone on hand",
        "Opioid use disorder and no naloxone prescription in the past year.",
        c.scenario(*workup(rescue=False)),
        cards={"naloxone-rescue": "info"},
        suggestions=(
            {
                "rule": "naloxone-rescue",
                "type": "create",
                "resourceType": "MedicationRequest",
                "expect": {"medicationCodeableConcept.coding.0.code": "1725059"},
            },
        ),
    )
    add(
        "near-miss-naloxone-in-session",
        "Naloxone ordered in the same session",
        "A naloxone nasal spray is among the draft orders.",
        c.scenario(
            *workup(rescue=False),
            drafts=[
                named(
                    c.medication_request(c.NALOXONE_SPRAY, status="draft", supply_days=None), "naloxone-draft"
                )
            ],
        ),
        absent=("naloxone-rescue",),
    )

    # ------------------------------------------------------------------ low-dose naltrexone
    add(
        "ldn-first-start",
        "Low-dose naltrexone, first order at 1.5 mg at bedtime",
        "Compounded naltrexone 1.5 mg at bedtime for fibromyalgia, written as free text.",
        c.scenario(order=c.ldn_order(1.5)),
        cards={"ldn-titration": "info"},
        only=True,
    )
    add(
        "ldn-too-fast",
        "Low-dose naltrexone raised after 3 days",
        "1.5 mg was started 3 days ago; the new order is 3 mg.",
        c.scenario(
            named(
                c.medication_request(
                    {"text": "naltrexone 1.5 mg capsule (compounded)"},
                    authored=-3,
                    dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 1.5, "unit": "mg"}}]}],
                ),
                "ldn-rx-1",
            ),
            order=c.ldn_order(3),
        ),
        cards={"ldn-titration": "warning"},
        suggestions=(
            {
                "rule": "ldn-titration",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {"dosageInstruction.0.doseAndRate.0.doseQuantity.value": 1.5},
            },
        ),
    )
    add(
        "ldn-max-dose",
        "Low-dose naltrexone 6 mg",
        "6 mg is above the usual 4.5 mg maximum.",
        c.scenario(order=c.ldn_order(6)),
        cards={"ldn-max-dose": "warning"},
        absent=("dose-unrecognized",),
        suggestions=(
            {
                "rule": "ldn-max-dose",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {"dosageInstruction.0.doseAndRate.0.doseQuantity.value": 4.5},
            },
        ),
    )
    add(
        "ldn-bedtime",
        "Low-dose naltrexone in the morning",
        "1.5 mg every morning.",
        c.scenario(order=c.ldn_order(1.5, when=["MORN"])),
        cards={"ldn-bedtime": "info"},
        suggestions=(
            {
                "rule": "ldn-bedtime",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {"dosageInstruction.0.timing.repeat.when.0": "HS"},
            },
        ),
    )
    add(
        "ldn-slow-release",
        "Low-dose naltrexone slow-release",
        "A compounded 1.5 mg SR capsule.",
        c.scenario(order=c.ldn_order(1.5, text="naltrexone 1.5 mg SR capsule (compounded)")),
        cards={"ldn-formulation": "warning"},
    )
    add(
        "ldn-split-tablet",
        "Low-dose naltrexone from a 50 mg tablet",
        "4.5 mg ordered against the commercial 50 mg tablet (RxNorm 1483744).",
        c.scenario(
            order=c.ldn_order(4.5)
            | {"medicationCodeableConcept": c.rx("1483744", "naltrexone hydrochloride 50 MG Oral Tablet")}
        ),
        cards={"ldn-formulation": "warning"},
    )
    add(
        "ldn-recent-opioid",
        "Low-dose naltrexone after a recent opioid",
        "Oxycodone supply ended 4 days ago; low-dose naltrexone: a warning, and titration advice stays.",
        c.scenario(
            named(c.dispense(c.OXYCODONE, handed=-10, days_supply=7), "oxycodone-md-3"),
            order=c.ldn_order(1.5),
        ),
        cards={"opioid-recent": "warning", "ldn-titration": "info"},
    )

    # ------------------------------------------------------------------ reverse direction, interactions
    add(
        "opioid-blockade",
        "Oxycodone ordered during extended-release naltrexone",
        "Extended-release naltrexone was injected 10 days ago; oxycodone is now ordered.",
        c.scenario(named(c.administration(c.VIVITROL, given=-10), "vivitrol-ma-1"), order=c.opioid_order()),
        cards={"opioid-blockade": "warning"},
        only=True,
    )
    add(
        "near-miss-blockade-worn-off",
        "Oxycodone ordered 40 days after the injection",
        "The last extended-release naltrexone injection was 40 days ago.",
        c.scenario(named(c.administration(c.VIVITROL, given=-40), "vivitrol-ma-2"), order=c.opioid_order()),
        only=True,
    )
    add(
        "opioid-interaction",
        "Loperamide at a naltrexone start",
        "The patient takes loperamide.",
        c.scenario(
            named(c.medication_request({"text": c.LOPERAMIDE_TEXT}, authored=-2), "loperamide-rx-1"),
            *workup(),
        ),
        cards={"opioid-interaction": "info"},
    )
    add(
        "near-miss-loperamide-finished",
        "Loperamide finished last month",
        "A 5-day loperamide course 40 days ago.",
        c.scenario(
            named(
                c.medication_request(
                    {"text": c.LOPERAMIDE_TEXT}, status="completed", authored=-40, supply_days=5
                ),
                "loperamide-rx-2",
            ),
            *workup(),
        ),
        absent=("opioid-interaction",),
    )

    # ------------------------------------------------------------------ hooks and multiple orders
    add(
        "order-sign-start",
        "Signing a new start",
        "Order-sign for a worked-up OUD start without naloxone: warning and critical only.",
        c.scenario(*workup(rescue=False, challenge=False), hook="order-sign"),
        cards={"test-dose": "warning"},
        absent=("naloxone-rescue", "naloxone-challenge-needed"),
    )
    two = c.scenario(
        named(c.allergy(c.rx("7243", "naltrexone")), "allergy-3"),
        *workup(),
        drafts=[naltrexone_order("draft-2")],
    )
    add(
        "order-sign-two-orders",
        "Two naltrexone orders signed together",
        "Both orders are reviewed; each rule gives one card covering both orders.",
        copy.deepcopy(two)
        | {"hook": "order-sign", "context": {k: v for k, v in two["context"].items() if k != "selections"}},
        cards={"hypersensitivity": "critical"},
        suggestions=(
            delete_draft("hypersensitivity", "draft-1"),
            delete_draft("hypersensitivity", "draft-2"),
        ),
    )
    select_opioid = c.scenario(
        named(c.administration(c.VIVITROL, given=-5), "vivitrol-ma-3"),
        drafts=[c.opioid_order()],
        selections=["MedicationRequest/opioid-1"],
    )
    add(
        "order-select-reviews-only-selections",
        "Only the selected order is reviewed",
        "A naltrexone draft and an oxycodone draft; only the oxycodone order is selected.",
        select_opioid,
        cards={"opioid-blockade": "warning"},
        only=True,
    )

    # ------------------------------------------------------------------ real client shapes
    # The sandbox named its local FHIR server (127.0.0.1:8090); the scenarios name one that cannot be
    # reached instead, so that no test depends on what listens on that port.
    sandbox = next(
        b
        for b in sandbox_hook_bodies("order-select")
        if "medicationCodeableConcept" in b["context"]["draftOrders"]["entry"][0]["resource"]
    )
    sandbox["fhirServer"] = UNREACHABLE_FHIR_SERVER
    add(
        "sandbox-order-select-pat1",
        "The CDS Hooks sandbox's own order-select",
        "Captured from the sandbox: pat1's fentanyl patch (still marked active, supply ended in 2015) under another "
        "service's prefetch key; this service's keys are absent and its fhirServer cannot be reached.",
        sandbox,
        cards={"opioid-active": "critical", "opioid-history-unverified": "warning"},
        quirk="real sandbox output: draftOrders has no Bundle.type and category is a single object",
    )
    first = sandbox_hook_bodies("order-select")[0]
    first["fhirServer"] = UNREACHABLE_FHIR_SERVER
    add(
        "sandbox-no-medication-yet",
        "Sandbox order-select before a drug is chosen",
        "The sandbox fires order-select before any medication is picked.",
        first,
        only=True,
        quirk="real sandbox output: draftOrders has no Bundle.type",
    )
    contained = naltrexone_order(
        contained=[
            {
                "resourceType": "Medication",
                "id": "med-1",
                "code": c.rx("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"),
            }
        ]
    )
    contained.pop("medicationCodeableConcept")
    contained["medicationReference"] = {"reference": "#med-1"}
    add(
        "medication-reference-contained",
        "Draft with a contained Medication",
        "The draft points to a contained Medication (medicationReference '#med-1').",
        c.scenario(*workup(), order=contained),
        cards={"test-dose": "warning"},
    )
    bundled = naltrexone_order(medicationReference={"reference": "Medication/ntx-50"})
    bundled.pop("medicationCodeableConcept")
    body = c.scenario(*workup(), order=bundled)
    body["context"]["draftOrders"]["entry"].append(
        {"resource": {"resourceType": "Medication", "id": "ntx-50", "code": c.rx(*c.VIVITROL)}}
    )
    add(
        "medication-reference-bundled",
        "Draft referencing a Medication in draftOrders",
        "The draft references Medication/ntx-50 (extended-release naltrexone) carried in the same Bundle; the "
        "dose written is 50 mg daily, not the injection's 380 mg every 4 weeks.",
        body,
        cards={"xr-dose": "warning"},
        absent=("test-dose", "dose-unrecognized"),
    )
    patient_ref = c.scenario(named(c.medication_request(c.OXYCODONE, authored=-1), "oxycodone-rx-3"))
    patient_ref["context"]["patientId"] = f"Patient/{patient_ref['context']['patientId']}"
    add(
        "patient-id-as-reference",
        "patientId sent as Patient/<id>",
        "Some clients send context.patientId as a reference.",
        patient_ref,
        cards={"opioid-active": "critical"},
        quirk="context.patientId is 'Patient/<id>' instead of the bare id (seen in CDC opioid CDS requests)",
    )
    untyped = c.scenario(*workup())
    del untyped["context"]["draftOrders"]["type"]
    add(
        "bundle-without-type",
        "draftOrders without Bundle.type",
        "The draft Bundle has no type, as the sandbox sends it.",
        untyped,
        cards={"test-dose": "warning"},
        quirk="draftOrders Bundle without type (Bundle.type is required in R4)",
    )
    ndc = naltrexone_order(
        medicationCodeableConcept={
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "68071-3654-3"}]
        },
        dosageInstruction=[
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "code": "{tbl}", "system": c.UCUM}}],
            }
        ],
    )
    add(
        "ndc-only-naltrexone",
        "Naltrexone identified by NDC only",
        "The order carries only an NDC of a 50 mg naltrexone tablet; 1 tablet daily.",
        c.scenario(named(c.medication_request(c.OXYCODONE, authored=-1), "oxycodone-rx-4"), order=ndc),
        cards={"opioid-active": "critical"},
    )
    epic = named(c.medication_request(c.OXYCODONE, authored=-2), "epic-mr-1")
    epic.pop("medicationCodeableConcept")
    epic["medicationReference"] = {"reference": "Medication/eNq2b", "display": "oxyCODONE 5 MG tablet"}
    add(
        "history-medication-by-display",
        "History medication known only by its reference display",
        "An EHR-style MedicationRequest references a Medication not sent, but displays 'oxyCODONE 5 MG tablet'.",
        c.scenario(epic, *workup()),
        cards={"opioid-active": "critical"},
    )

    # ------------------------------------------------------------------ real data (HL7 FHIR R4 examples, CC0)
    pat1 = example("Patient-pat1.json")
    history = [example(f"MedicationRequest-medrx0{n}.json") for n in ("327", "333", "301", "307", "308")]
    dispenses = [example(f"MedicationDispense-meddisp0{n}.json") for n in ("303", "310", "321", "325")]
    order = naltrexone_order(patient_id="pat1")
    real = hook_request(drafts=[order], patient_id="pat1")
    real["prefetch"].update(
        {
            "patient": pat1,
            "medicationRequests": searchset(*history),
            "medicationDispenses": searchset(*dispenses),
            "medicationAdministrations": searchset(example("MedicationAdministration-medadmin0312.json")),
        }
    )
    add(
        "hl7-example-pat1",
        "FHIR R4 example patient pat1 (real data)",
        "The official example patient pat1 has a fentanyl patch and oxycodone still marked active (from 2015) and "
        "completed Percocet/Vicodin; a naltrexone start is ordered.",
        real,
        cards={"opioid-active": "critical"},
        absent=GUIDANCE,
    )
    ghp = example("Bundle-ghp.json")
    pat2 = (
        example("Patient-pat2.json")
        if (EXAMPLES / "Patient-pat2.json").exists()
        else {"resourceType": "Patient", "id": "pat2"}
    )
    labs = [
        e["resource"]
        for e in ghp["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"].get("subject")
    ]
    liver = hook_request(drafts=[naltrexone_order(patient_id="pat2")], patient_id="pat2")
    liver["prefetch"].update({"patient": pat2, "labResults": searchset(*labs)})
    add(
        "hl7-example-ghp-liver-panel",
        "FHIR R4 example liver panel without dates (real data)",
        "pat2's general health panel (ALT 54 U/L, AST 30 U/L, bilirubin 7 umol/L) carries no effective date on its "
        "results, so they cannot show liver tests within 90 days.",
        liver,
        cards={"lft-needed": "info"},
        absent=("lft-elevated",),
    )


def render_readme() -> str:
    lines = [
        "# fhir_fixtures — CDS Hooks requests by clinical scenario",
        "",
        "Each folder holds `request.json` (a complete CDS Hooks request, dated as of its `reference_date`) and",
        "`expected.json` (the cards that must come back with their indicators, the rule ids that must not, and",
        "the key content of suggestions). `tests/test_fixtures.py` posts every request to the running service",
        "over HTTP — with every date moved forward to keep the same distance from today — and checks the answer.",
        "",
        "Reproduce one by hand, as of its reference date:",
        "",
        "```sh",
        "naltrexone-cds evaluate fhir_fixtures/uds-positive/request.json --today 2026-11-22",
        "```",
        "",
        "`expected.json`: `cards` (rule id → indicator, must appear), `absent` (must not appear), `only` (no",
        "other card may appear), `suggestions` (a suggestion of that card must contain an action of that",
        "`type`, for that `resourceType`/`resourceId`, whose resource has the listed values; `@+N` is the",
        "reference date plus N days), `quirk` (the request deliberately carries a real client's",
        "non-conformant shape; every other fixture's resources validate with fhir.resources).",
        "",
        "Regenerate with `python fhir_fixtures/build.py`; the expectations live there, written from the",
        "clinical story, never copied from the service's output. Real data in `_sources/` keeps its provenance.",
        "The scenarios of the clinical-reading work (issue 11: result wording, units, substances, naloxone",
        "allergy, planned surgery, decompensation, time zones, continuation, pregnancy outcomes, doses) are in",
        "`scenarios_reading.py`, each class with its near miss.",
        "",
        "Rule ids added to the contract by that work (rules/README.md has their full definitions):",
        "",
        "- `result-unreadable` (warning): a screen, challenge or liver test that could not be read;",
        "- `naloxone-hypersensitivity` (warning; critical when severe): an allergy to naloxone or nalmefene;",
        "- `planned-procedure` (warning; info when undated): surgery planned within the hold for the form;",
        "- `duplicate-therapy` (warning): a second naltrexone product on top of one in use.",
        "",
        f"{len(SCENARIOS)} scenarios:",
        "",
        "| scenario | hook | story | cards expected | must not appear |",
        "|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        expected = scenario["expected"]
        cards = ", ".join(f"`{rule}` ({indicator})" for rule, indicator in expected["cards"].items())
        if expected["only"]:
            cards = (cards + " — nothing else") if cards else "no cards"
        absent = ", ".join(f"`{rule}`" for rule in expected["absent"]) or "—"
        story = expected["story"] + (f" *Quirk: {expected['quirk']}.*" if "quirk" in expected else "")
        lines.append(
            f"| [{scenario['name']}]({scenario['name']}/) | {expected['hook']} | {story} | {cards or '—'} | {absent} |"
        )
    return "\n".join(lines) + "\n"


def write(target: Path = ROOT) -> list[Path]:
    SCENARIOS.clear()
    c.reset_ids()
    build()
    build_reading()
    build_cards()
    build_clients()
    names = [s["name"] for s in SCENARIOS]
    if len(set(names)) != len(names):
        raise SystemExit("scenario names must be unique")
    written = []
    for scenario in SCENARIOS:
        folder = target / scenario["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for filename, content in (
            ("request.json", scenario["request"]),
            ("expected.json", scenario["expected"]),
        ):
            path = folder / filename
            path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    readme = target / "README.md"
    readme.write_text(render_readme(), encoding="utf-8")
    written.append(readme)
    return written


if __name__ == "__main__":
    paths = write()
    print(f"wrote {len(SCENARIOS)} scenarios ({len(paths)} files)")
