"""The rule cases: for every rule id, complete requests where it fires (with its indicator) and near misses.

``tests/test_rules.py`` runs each through the pipeline; ``tests/test_cards.py`` reads every card they give.
Each case is written from the clinical story and the rule's contract, as of ``tests.support.NOW``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_fixtures import clinical as c
from fhir_fixtures.requests import naltrexone_order


@dataclass
class Case:
    name: str
    body: dict[str, Any]
    fires: dict[str, str] = field(default_factory=dict)  # rule id -> indicator
    absent: tuple[str, ...] = ()
    hook: str = "order-select"


def _case(
    name: str,
    *resources: Any,
    fires: dict[str, str] | None = None,
    absent: tuple[str, ...] = (),
    order: Any = None,
    hook: str = "order-select",
    **kwargs: Any,
) -> Case:
    return Case(name, c.scenario(*resources, order=order, hook=hook, **kwargs), fires or {}, absent, hook)


OUD = c.oud()
NEG_UDS = c.urine_opiates("Negative", when=-1)
PASSED = c.naloxone_challenge("passed", when=-1)
LFT_OK = c.alt(30)
RESCUE = c.medication_request(c.NALOXONE_SPRAY, authored=-100, supply_days=None)
# everything a standard-dose OUD start wants is on record: only the rule under test should differ
READY = (OUD, NEG_UDS, PASSED, LFT_OK, RESCUE)

CASES = [
    # --- opioid-active -------------------------------------------------------------------------
    _case(
        "active oxycodone prescription",
        c.medication_request(c.OXYCODONE, authored=-3),
        *READY,
        fires={"opioid-active": "critical"},
        absent=("opioid-recent", "test-dose"),
    ),
    _case(
        "opioid in the same draft orders",
        *READY,
        drafts=[c.opioid_order()],
        fires={"opioid-active": "critical"},
    ),
    _case("active opioid statement", c.statement(c.METHADONE), *READY, fires={"opioid-active": "critical"}),
    _case(
        "dispense whose supply covers today",
        c.dispense(c.OXYCODONE, handed=-5, days_supply=10),
        *READY,
        fires={"opioid-active": "critical"},
    ),
    _case(
        "near miss: completed prescription that ended 20 days ago",
        c.medication_request(c.OXYCODONE, status="completed", authored=-50, supply_days=30),
        *READY,
        absent=("opioid-active", "opioid-recent"),
    ),
    _case(
        "near miss: Embeda drafted is an opioid, but the naltrexone in it is not a naltrexone order",
        *READY,
        order=c.opioid_order(c.EMBEDA),
        absent=("opioid-active", "test-dose", "lft-needed"),
    ),
    # --- opioid-recent -------------------------------------------------------------------------
    _case(
        "dispense ended 4 days ago (short-acting)",
        c.dispense(c.OXYCODONE, handed=-10, days_supply=7),
        *READY,
        fires={"opioid-recent": "critical"},
        absent=("opioid-active",),
    ),
    _case(
        "methadone ended 12 days ago (14-day interval)",
        c.statement(c.METHADONE, status="completed", start=-90, end=-12),
        *READY,
        fires={"opioid-recent": "critical"},
    ),
    _case(
        "low-dose naltrexone after a recent opioid is a warning",
        c.dispense(c.OXYCODONE, handed=-10, days_supply=7),
        order=c.ldn_order(),
        fires={"opioid-recent": "warning"},
    ),
    _case(
        "low-dose naltrexone 12 days after methadone is critical (dependence likely)",
        c.statement(c.METHADONE, status="completed", start=-90, end=-12),
        order=c.ldn_order(),
        fires={"opioid-recent": "critical"},
    ),
    _case(
        "one opioid dose in the emergency department, no other exposure, no opioid use disorder",
        c.administration(("1734634", "morphine sulfate 4 MG/ML Injectable Solution"), given=-3),
        NEG_UDS,
        LFT_OK,
        fires={"opioid-recent": "warning"},
        absent=("opioid-active",),
    ),
    _case(
        "near miss: one dose in care, but the patient has opioid use disorder",
        c.administration(("1734634", "morphine sulfate 4 MG/ML Injectable Solution"), given=-3),
        *READY,
        fires={"opioid-recent": "critical"},
    ),
    _case(
        "near miss: short-acting opioid ended exactly 10 days ago",
        c.dispense(c.OXYCODONE, handed=-19, days_supply=10),
        *READY,
        absent=("opioid-recent", "opioid-active"),
    ),
    _case(
        "near miss: methadone ended 14 days ago",
        c.statement(c.METHADONE, status="completed", start=-90, end=-14),
        *READY,
        absent=("opioid-recent",),
    ),
    # --- opioid-history-unverified ---------------------------------------------------------------
    _case(
        "medication history reported as failed",
        *READY,
        fires={"opioid-history-unverified": "warning"},
        prefetch_override={
            "medicationDispenses": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "timeout", "diagnostics": "pharmacy feed timed out"}],
            }
        },
    ),
    _case("near miss: empty medication history is an answer", *READY, absent=("opioid-history-unverified",)),
    # --- opioid-withdrawal ---------------------------------------------------------------------
    _case(
        "active opioid withdrawal",
        c.condition(c.ICD10, "F11.23", "Opioid dependence with withdrawal", onset=-2),
        *READY,
        fires={"opioid-withdrawal": "critical"},
        absent=("naloxone-challenge-needed",),
    ),
    _case(
        "near miss: resolved withdrawal",
        c.condition(c.ICD10, "F11.23", "Opioid dependence with withdrawal", clinical="resolved"),
        *READY,
        absent=("opioid-withdrawal",),
    ),
    _case(
        "near miss: refuted withdrawal",
        c.condition(c.SNOMED, "87132004", "Opioid withdrawal", verification="refuted"),
        *READY,
        absent=("opioid-withdrawal",),
    ),
    # --- uds-positive --------------------------------------------------------------------------
    _case(
        "positive urine opioid screen 3 days ago",
        OUD,
        c.urine_opiates("POS", when=-3),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "critical"},
    ),
    _case(
        "near miss: passed naloxone challenge after the positive screen",
        OUD,
        c.urine_opiates("positive", when=-3),
        c.naloxone_challenge("passed", when=-1),
        LFT_OK,
        RESCUE,
        absent=("uds-positive",),
    ),
    _case(
        "near miss: positive naltrexone assay is not an opioid screen",
        *READY,
        c.observation("19609-7", "Naltrexone [Presence] in Urine", when=-2, valueString="Positive"),
        absent=("uds-positive",),
    ),
    _case(
        "near miss: positive screen 15 days ago",
        OUD,
        c.urine_opiates("positive", when=-15),
        NEG_UDS,
        PASSED,
        LFT_OK,
        RESCUE,
        absent=("uds-positive",),
    ),
    _case(
        "positive 12 days ago, negative for the same analyte 2 days ago: a warning, no repeat asked",
        OUD,
        c.urine_opiates("POS", when=-12),
        c.urine_opiates("NEG", when=-2),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "warning"},
        absent=("uds-needed",),
    ),
    _case(
        "fentanyl positive; a newer negative opiates immunoassay does not clear fentanyl",
        OUD,
        c.observation(
            "59673-4", "fentaNYL [Presence] in Urine by Screen method", when=-12, valueString="POS"
        ),
        c.urine_opiates("NEG", when=-2),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "critical"},
    ),
    _case(
        "near miss: positive 5 days ago, negative yesterday: the opioid-free wait is not over",
        OUD,
        c.urine_opiates("POS", when=-5),
        c.urine_opiates("NEG", when=-1),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "critical"},
    ),
    _case(
        "a cup written as one string with one opioid positive",
        OUD,
        c.urine_opiates("AMP neg, THC pos, OPI neg, FEN POS", when=-1),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "critical"},
    ),
    # --- result-unreadable ---------------------------------------------------------------------
    _case(
        "naloxone challenge recorded as true: a warning at order-sign too",
        OUD,
        NEG_UDS,
        c.observation(
            "naloxone-challenge",
            "Naloxone challenge",
            when=-1,
            system=c.PROJECT_OBSERVATION,
            valueBoolean=True,
        ),
        LFT_OK,
        RESCUE,
        hook="order-sign",
        fires={"result-unreadable": "warning"},
        absent=("naloxone-challenge-needed",),
    ),
    _case(
        "dilute negative screen is unreadable, not negative",
        OUD,
        c.urine_opiates("NEG DILUTE", when=-1),
        PASSED,
        LFT_OK,
        RESCUE,
        fires={"result-unreadable": "warning"},
        absent=("uds-needed", "uds-positive"),
    ),
    _case(
        "ALT in a unit that cannot be converted, without a reference range",
        *READY[:3],
        RESCUE,
        c.lab_value("1742-6", "ALT", 2.1, "mmol/h", when=-5),
        fires={"result-unreadable": "warning"},
        absent=("lft-needed", "lft-elevated"),
    ),
    _case(
        "near miss: an unreadable screen superseded by a newer negative one",
        OUD,
        c.urine_opiates("see comment", when=-4),
        c.urine_opiates("negative", when=-1),
        PASSED,
        LFT_OK,
        RESCUE,
        absent=("result-unreadable", "uds-needed"),
    ),
    _case(
        "ALT in µkat/L written with the Greek letter mu",
        *READY[:3],
        RESCUE,
        c.lab_value("1742-6", "ALT", 4.0, "\u03bckat/L", when=-5),
        fires={"lft-elevated": "critical"},
        absent=("result-unreadable", "lft-needed"),
    ),
    # --- uds-needed ----------------------------------------------------------------------------
    _case("OUD and no urine screen", OUD, PASSED, LFT_OK, RESCUE, fires={"uds-needed": "warning"}),
    _case(
        "near miss: negative screen 6 days ago",
        OUD,
        c.urine_opiates("negative", when=-6),
        PASSED,
        LFT_OK,
        RESCUE,
        absent=("uds-needed",),
    ),
    _case(
        "near miss: no OUD and no opioid exposure", LFT_OK, absent=("uds-needed", "naloxone-challenge-needed")
    ),
    # --- naloxone-challenge-failed / needed ----------------------------------------------------
    _case(
        "failed naloxone challenge yesterday",
        OUD,
        NEG_UDS,
        c.naloxone_challenge("failed", when=-1),
        LFT_OK,
        RESCUE,
        fires={"naloxone-challenge-failed": "critical"},
        absent=("naloxone-challenge-needed",),
    ),
    _case(
        "near miss: failed challenge 8 days ago",
        OUD,
        NEG_UDS,
        c.naloxone_challenge("failed", when=-8),
        LFT_OK,
        RESCUE,
        absent=("naloxone-challenge-failed",),
        fires={"naloxone-challenge-needed": "info"},
    ),
    _case(
        "near miss: failed then passed rechallenge",
        OUD,
        NEG_UDS,
        c.naloxone_challenge("failed", when=-3),
        c.naloxone_challenge("passed", when=-1),
        LFT_OK,
        RESCUE,
        absent=("naloxone-challenge-failed", "naloxone-challenge-needed"),
    ),
    _case(
        "opioid use in 90 days and no challenge",
        c.dispense(c.OXYCODONE, handed=-60, days_supply=5),
        NEG_UDS,
        LFT_OK,
        fires={"naloxone-challenge-needed": "info"},
    ),
    # --- hepatic -------------------------------------------------------------------------------
    _case(
        "acute hepatitis",
        c.condition(c.SNOMED, "37871000", "Acute hepatitis"),
        *READY,
        fires={"hepatic-contraindication": "critical"},
        absent=("test-dose", "lft-needed"),
    ),
    _case(
        "near miss: resolved acute hepatitis",
        c.condition(c.ICD10, "B17.10", "Acute hepatitis C", clinical="resolved"),
        *READY,
        absent=("hepatic-contraindication",),
    ),
    _case(
        "decompensated cirrhosis",
        c.condition(c.SNOMED, "716203000", "Decompensated cirrhosis of liver"),
        *READY,
        fires={"hepatic-impairment": "warning"},
    ),
    _case(
        "compensated cirrhosis alone: information, not a stop",
        c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver"),
        *READY,
        fires={"hepatic-impairment": "info"},
    ),
    *[
        _case(
            f"decompensation coded without cirrhosis: {display}",
            c.condition(system, code, display),
            *READY,
            fires={"hepatic-impairment": "warning"},
        )
        for system, code, display in [
            (c.ICD10, "K76.6", "Portal hypertension"),
            (c.ICD10, "I85.00", "Esophageal varices without bleeding"),
            (c.ICD10, "R18.8", "Other ascites"),
            (c.ICD10, "K76.7", "Hepatorenal syndrome"),
            (c.ICD10, "K76.82", "Hepatic encephalopathy"),
            ("urn:local", "LIV-9", "Cirrhosis, Child-Pugh class C"),
        ]
    ],
    _case(
        "near miss: cirrhosis refuted, hepatic fibrosis without cirrhosis",
        c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver", verification="refuted"),
        c.condition(c.ICD10, "K74.00", "Hepatic fibrosis, unspecified"),
        *READY,
        absent=("hepatic-impairment",),
    ),
    _case(
        "near miss: a local diagnosis that says the cirrhosis is without ascites",
        c.condition("urn:local", "LIV-2", "Cirrhosis without ascites or varices"),
        *READY,
        fires={"hepatic-impairment": "info"},
    ),
    _case(
        "an episode of ascites last month, resolved, still marks decompensated disease",
        c.condition(c.ICD10, "R18.8", "Other ascites", clinical="resolved", onset=-40),
        *READY,
        fires={"hepatic-impairment": "warning"},
    ),
    _case(
        "Child-Pugh score 11 recorded as an Observation",
        c.condition(c.ICD10, "K70.30", "Alcoholic cirrhosis of liver without ascites"),
        c.observation("CP", "Child-Pugh score", when=-20, system="urn:local", valueInteger=11),
        *READY,
        fires={"hepatic-impairment": "warning"},
    ),
    _case(
        "near miss: Child-Pugh class A",
        c.condition(c.ICD10, "K70.30", "Alcoholic cirrhosis of liver without ascites"),
        c.observation("CP", "Child-Pugh classification", when=-20, system="urn:local", valueString="Class A"),
        *READY,
        fires={"hepatic-impairment": "info"},
    ),
    _case(
        "low-dose naltrexone with acute hepatitis: a warning, not a stop",
        c.condition(c.SNOMED, "37871000", "Acute hepatitis"),
        order=c.ldn_order(),
        fires={"hepatic-contraindication": "warning"},
    ),
    _case("ALT 4x ULN", OUD, NEG_UDS, PASSED, RESCUE, c.alt(160), fires={"lft-elevated": "warning"}),
    _case("AST 6x ULN", OUD, NEG_UDS, PASSED, RESCUE, c.ast(240), fires={"lft-elevated": "critical"}),
    _case(
        "ALT 3x ULN with bilirubin 2.5x",
        OUD,
        NEG_UDS,
        PASSED,
        RESCUE,
        c.alt(120),
        c.bilirubin(3.0),
        fires={"lft-elevated": "critical"},
    ),
    _case("near miss: ALT 2.9x ULN", OUD, NEG_UDS, PASSED, RESCUE, c.alt(116), absent=("lft-elevated",)),
    _case(
        "near miss: ALT 5x ULN 91 days ago",
        OUD,
        NEG_UDS,
        PASSED,
        RESCUE,
        c.alt(200, when=-91),
        absent=("lft-elevated",),
        fires={"lft-needed": "info"},
    ),
    _case(
        "ALT without a reference range uses the configured ULN",
        OUD,
        NEG_UDS,
        PASSED,
        RESCUE,
        c.alt(130, high=None),
        fires={"lft-elevated": "warning"},
    ),
    _case("near miss: ALT in 90 days", *READY, absent=("lft-needed",)),
    # --- hypersensitivity ----------------------------------------------------------------------
    _case(
        "naltrexone allergy",
        c.allergy(c.rx("7243", "naltrexone")),
        *READY,
        fires={"hypersensitivity": "critical"},
    ),
    _case(
        "near miss: resolved naltrexone allergy",
        c.allergy(c.rx("7243", "naltrexone"), clinical="resolved"),
        *READY,
        absent=("hypersensitivity",),
    ),
    _case(
        "near miss: naloxone is not naltrexone",
        c.allergy({"text": "naloxone"}),
        *READY,
        absent=("hypersensitivity",),
    ),
    _case(
        "nausea intolerance to naltrexone is a warning, not a contraindication",
        {
            **c.allergy(c.rx("7243", "naltrexone")),
            "type": "intolerance",
            "criticality": "low",
            "reaction": [{"manifestation": [{"text": "Nausea"}], "severity": "mild"}],
        },
        *READY,
        fires={"hypersensitivity": "warning"},
    ),
    # --- naloxone-hypersensitivity -------------------------------------------------------------
    _case(
        "naloxone allergy: no naloxone challenge, no naloxone kit",
        OUD,
        NEG_UDS,
        LFT_OK,
        c.allergy({"text": "Naloxone"}),
        fires={"naloxone-hypersensitivity": "warning"},
        absent=("naloxone-challenge-needed", "naloxone-rescue"),
    ),
    _case(
        "anaphylaxis to naloxone is critical",
        OUD,
        NEG_UDS,
        LFT_OK,
        {
            **c.allergy({"text": "NARCAN"}),
            "type": "allergy",
            "criticality": "high",
            "reaction": [{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}],
        },
        fires={"naloxone-hypersensitivity": "critical"},
        absent=("naloxone-challenge-needed", "naloxone-rescue"),
    ),
    _case(
        "near miss: buprenorphine/naloxone allergy is not a naloxone allergy",
        *READY,
        c.allergy(c.rx("1010603", "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film [Suboxone]")),
        absent=("naloxone-hypersensitivity",),
    ),
    # --- pregnancy -----------------------------------------------------------------------------
    _case(
        "pregnant (condition)",
        c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental"),
        *READY,
        fires={"pregnancy": "warning"},
    ),
    _case(
        "positive hCG 10 days ago",
        c.observation("2106-3", "hCG Ql Ur", when=-10, valueString="positive"),
        *READY,
        fires={"pregnancy": "warning"},
    ),
    _case(
        "near miss: positive hCG 31 days ago",
        c.observation("2106-3", "hCG Ql Ur", when=-31, valueString="positive"),
        *READY,
        absent=("pregnancy",),
    ),
    # --- planned-procedure ---------------------------------------------------------------------
    _case(
        "cholecystectomy ordered for 5 days from now (oral)",
        c.surgery_order(in_days=5),
        *READY,
        fires={"planned-procedure": "warning"},
        absent=("test-dose",),  # a contraindication: start-up guidance is left out
    ),
    _case(
        "knee arthroplasty booked in 21 days (injection)",
        c.appointment("Right total knee arthroplasty, OR 4", in_days=21),
        *READY,
        order=c.xr_order(),
        fires={"planned-procedure": "warning"},
    ),
    _case(
        "surgery ordered with no date",
        c.surgery_order("Inguinal hernia repair", in_days=None, cpt="49505"),
        *READY,
        fires={"planned-procedure": "info"},
    ),
    _case(
        "near miss: surgery in 20 days is outside the oral hold",
        c.surgery_order(in_days=20),
        *READY,
        absent=("planned-procedure",),
    ),
    _case(
        "near miss: a surgical follow-up visit is not an operation",
        c.appointment("Post-op check", in_days=2, serviceCategory=[{"text": "Surgery"}]),
        *READY,
        absent=("planned-procedure",),
    ),
    _case(
        "near miss: a cancelled appointment for surgery",
        c.appointment("Laparoscopic cholecystectomy", in_days=3, status="cancelled"),
        *READY,
        absent=("planned-procedure",),
    ),
    # --- test-dose -----------------------------------------------------------------------------
    _case("OUD, 50 mg daily, no naltrexone in 30 days", *READY, fires={"test-dose": "warning"}),
    _case(
        "near miss: naltrexone taken 20 days ago",
        *READY,
        c.dispense(("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"), handed=-50, days_supply=30),
        absent=("test-dose",),
    ),
    _case(
        "near miss: alcohol use disorder only",
        c.condition(c.ICD10, "F10.20", "Alcohol dependence"),
        NEG_UDS,
        LFT_OK,
        absent=("test-dose", "naloxone-rescue"),
    ),
    _case(
        "near miss: the order is already the 25 mg test dose",
        *READY,
        order=naltrexone_order(
            dosageInstruction=[
                {
                    "timing": {"repeat": {"count": 1}},
                    "doseAndRate": [
                        {"doseQuantity": {"value": 25, "unit": "mg", "system": c.UCUM, "code": "mg"}}
                    ],
                }
            ]
        ),
        absent=("test-dose", "dose-unrecognized"),
    ),
    # --- naloxone-rescue (issue 11: every injection, whatever the indication) -------------------
    _case(
        "extended-release injection for alcohol use disorder, no naloxone on file",
        c.condition(c.ICD10, "F10.20", "Alcohol dependence, uncomplicated"),
        LFT_OK,
        order=c.xr_order(),
        fires={"naloxone-rescue": "info"},
    ),
    _case(
        "near miss: oral naltrexone for alcohol use disorder",
        c.condition(c.ICD10, "F10.20", "Alcohol dependence, uncomplicated"),
        LFT_OK,
        absent=("naloxone-rescue",),
    ),
    _case(
        "near miss: nalmefene nasal spray prescribed 3 months ago",
        c.condition(c.ICD10, "F10.20", "Alcohol dependence, uncomplicated"),
        LFT_OK,
        c.medication_request(
            {"text": "Opvee (nalmefene) 2.7 mg nasal spray"}, authored=-90, supply_days=None
        ),
        order=c.xr_order(),
        absent=("naloxone-rescue",),
    ),
    # --- continuing naltrexone / duplicate-therapy ---------------------------------------------
    _case(
        "oral naltrexone supply covers today: a refill, not a start",
        OUD,
        c.dispense(("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"), handed=-25, days_supply=30),
        fires={"naloxone-rescue": "info"},
        absent=("test-dose", "uds-needed", "naloxone-challenge-needed", "duplicate-therapy"),
    ),
    _case(
        "the monthly injection three weeks after the last",
        OUD,
        c.administration(c.VIVITROL, given=-21),
        order=c.xr_order(),
        absent=("uds-needed", "naloxone-challenge-needed", "duplicate-therapy"),
    ),
    _case(
        "near miss: injection six weeks ago is a restart",
        OUD,
        c.administration(c.VIVITROL, given=-42),
        order=c.xr_order(),
        fires={"uds-needed": "warning", "naloxone-challenge-needed": "info"},
    ),
    _case(
        "oral naltrexone ten days after an injection",
        OUD,
        c.administration(c.VIVITROL, given=-10),
        fires={"duplicate-therapy": "warning"},
        absent=("test-dose", "uds-needed", "naloxone-challenge-needed"),
    ),
    _case(
        "near miss: oral naltrexone after the injection's blockade",
        *READY,
        c.administration(c.VIVITROL, given=-40),
        absent=("duplicate-therapy",),
    ),
    # --- patient-mismatch ---------------------------------------------------------------------
    _case(
        "the order names another patient than the chart",
        *READY,
        order=naltrexone_order(patient_id="someone-else"),
        fires={"patient-mismatch": "critical"},
    ),
    _case(
        "near miss: the order names the chart's patient by its full URL",
        *READY,
        order={
            **naltrexone_order(),
            "subject": {"reference": "https://ehr.example.org/fhir/Patient/pat-tests-1"},
        },
        absent=("patient-mismatch",),
    ),
    # --- xr-dose / dose-unrecognized -----------------------------------------------------------
    _case(
        "extended-release 190 mg",
        *READY,
        order=c.xr_order(190),
        fires={"xr-dose": "warning"},
        absent=("dose-unrecognized", "test-dose"),
    ),
    _case(
        "extended-release given subcutaneously",
        *READY,
        order=c.xr_order(380, route="34206005"),
        fires={"xr-dose": "warning"},
    ),
    _case(
        "near miss: 380 mg IM every 4 weeks",
        *READY,
        order=c.xr_order(),
        absent=("xr-dose", "dose-unrecognized"),
    ),
    _case(
        "oral 75 mg daily is not a known regimen",
        *READY,
        order=naltrexone_order(
            dosageInstruction=[
                {
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 75, "unit": "mg"}}],
                }
            ]
        ),
        fires={"dose-unrecognized": "warning"},
    ),
    _case(
        "no dose at all",
        *READY,
        order=naltrexone_order(dosageInstruction=[{"text": "as directed"}]),
        fires={"dose-unrecognized": "warning"},
    ),
    _case(
        "near miss: 100 mg every 2 days",
        *READY,
        order=naltrexone_order(
            dosageInstruction=[
                {
                    "timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 100, "unit": "mg"}}],
                }
            ]
        ),
        absent=("dose-unrecognized",),
    ),
    # --- naloxone-rescue -----------------------------------------------------------------------
    _case(
        "OUD and no naloxone in 12 months", OUD, NEG_UDS, PASSED, LFT_OK, fires={"naloxone-rescue": "info"}
    ),
    _case("near miss: naloxone prescribed 100 days ago", *READY, absent=("naloxone-rescue",)),
    _case(
        "near miss: naloxone ordered in the same session",
        OUD,
        NEG_UDS,
        PASSED,
        LFT_OK,
        drafts=[c.medication_request(c.NALOXONE_SPRAY, status="draft", supply_days=None)],
        absent=("naloxone-rescue",),
    ),
    # --- low-dose naltrexone -------------------------------------------------------------------
    _case(
        "first LDN order at 1.5 mg at bedtime",
        order=c.ldn_order(1.5),
        fires={"ldn-titration": "info"},
        absent=(
            "ldn-bedtime",
            "ldn-max-dose",
            "ldn-formulation",
            "dose-unrecognized",
            "test-dose",
            "lft-needed",
        ),
    ),
    _case(
        "first LDN order at 3 mg departs from the plan",
        order=c.ldn_order(3),
        fires={"ldn-titration": "warning"},
    ),
    _case(
        "LDN step to 3 mg a week after 1.5 mg",
        c.medication_request(
            {"text": "naltrexone 1.5 mg capsule (compounded)"},
            authored=-8,
            supply_days=30,
            dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 1.5, "unit": "mg"}}]}],
        ),
        order=c.ldn_order(3),
        fires={"ldn-titration": "info"},
    ),
    _case(
        "LDN step after only 3 days",
        c.medication_request(
            {"text": "naltrexone 1.5 mg capsule (compounded)"},
            authored=-3,
            supply_days=30,
            dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 1.5, "unit": "mg"}}]}],
        ),
        order=c.ldn_order(3),
        fires={"ldn-titration": "warning"},
    ),
    _case(
        "LDN 6 mg is above the maximum",
        order=c.ldn_order(6),
        fires={"ldn-max-dose": "warning"},
        absent=("dose-unrecognized",),
    ),
    _case("near miss: LDN 4.5 mg", order=c.ldn_order(4.5), absent=("ldn-max-dose",)),
    _case("LDN in the morning", order=c.ldn_order(1.5, when=["MORN"]), fires={"ldn-bedtime": "info"}),
    _case(
        "near miss: LDN at 21:00",
        order=c.ldn_order(1.5, when=None)
        | {
            "dosageInstruction": [
                {
                    "timing": {
                        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": ["21:00:00"]}
                    },
                    "doseAndRate": [{"doseQuantity": {"value": 1.5, "unit": "mg"}}],
                }
            ]
        },
        absent=("ldn-bedtime",),
    ),
    _case(
        "LDN slow-release",
        order=c.ldn_order(1.5, text="naltrexone 1.5 mg SR capsule (compounded)"),
        fires={"ldn-formulation": "warning"},
    ),
    _case(
        "LDN from a split 50 mg tablet",
        order=c.ldn_order(4.5)
        | {"medicationCodeableConcept": c.rx("1483744", "naltrexone hydrochloride 50 MG Oral Tablet")},
        fires={"ldn-formulation": "warning"},
    ),
    _case("near miss: compounded immediate-release LDN", order=c.ldn_order(3), absent=("ldn-formulation",)),
    # --- opioid-blockade -----------------------------------------------------------------------
    _case(
        "oxycodone ordered during extended-release naltrexone",
        c.administration(c.VIVITROL, given=-10),
        order=c.opioid_order(),
        fires={"opioid-blockade": "warning"},
    ),
    _case(
        "oxycodone ordered 2 days after the last oral naltrexone",
        c.dispense(("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"), handed=-32, days_supply=30),
        order=c.opioid_order(),
        fires={"opioid-blockade": "warning"},
    ),
    _case(
        "near miss: last oral naltrexone 5 days ago",
        c.dispense(("1483744", "naltrexone hydrochloride 50 MG Oral Tablet"), handed=-35, days_supply=30),
        order=c.opioid_order(),
        absent=("opioid-blockade",),
    ),
    _case(
        "near miss: injection 40 days ago",
        c.administration(c.VIVITROL, given=-40),
        order=c.opioid_order(),
        absent=("opioid-blockade",),
    ),
    # --- opioid-interaction --------------------------------------------------------------------
    _case(
        "active loperamide",
        c.medication_request({"text": c.LOPERAMIDE_TEXT}, authored=-2),
        *READY,
        fires={"opioid-interaction": "info"},
    ),
    _case(
        "near miss: loperamide finished last month",
        c.medication_request({"text": c.LOPERAMIDE_TEXT}, status="completed", authored=-40, supply_days=5),
        *READY,
        absent=("opioid-interaction",),
    ),
    # --- Contrave: opioid-conflict rules only --------------------------------------------------
    _case(
        "Contrave with an active opioid",
        c.medication_request(c.OXYCODONE, authored=-2),
        order=naltrexone_order(medicationCodeableConcept=c.rx(*c.CONTRAVE)),
        fires={"opioid-active": "critical"},
        absent=("ldn-titration", "test-dose", "dose-unrecognized", "lft-needed"),
    ),
    _case(
        "near miss: Contrave gets no start-up guidance",
        OUD,
        order=naltrexone_order(medicationCodeableConcept=c.rx(*c.CONTRAVE)),
        absent=("ldn-titration", "test-dose", "uds-needed", "naloxone-rescue", "lft-needed"),
    ),
    # --- found in review: real-world shapes ----------------------------------------------------
    _case(
        "an active monthly extended-release prescription blocks an ordered opioid",
        c.medication_request(c.VIVITROL, authored=-200, supply_days=28, repeats=11),
        order=c.opioid_order(),
        fires={"opioid-blockade": "warning"},
    ),
    _case(
        "presumptive-positive wording counts as positive",
        OUD,
        c.urine_opiates("Presumptive Positive", when=-2),
        LFT_OK,
        RESCUE,
        fires={"uds-positive": "critical"},
    ),
    _case(
        "a drug panel's positive fentanyl component",
        OUD,
        LFT_OK,
        RESCUE,
        c.observation(
            "LOCAL-PANEL",
            "Urine drug panel",
            when=-2,
            system="urn:local",
            component=[
                {"code": {"text": "Fentanyl, urine"}, "valueString": "POSITIVE"},
                {"code": {"text": "Naltrexone, urine"}, "valueString": "POSITIVE"},
            ],
        ),
        fires={"uds-positive": "critical"},
    ),
    _case(
        "a free-text failed challenge",
        OUD,
        NEG_UDS,
        LFT_OK,
        RESCUE,
        c.observation(
            "NC", "Naloxone challenge", when=-1, system="urn:local", valueString="FAIL - withdrawal signs"
        ),
        fires={"naloxone-challenge-failed": "critical"},
    ),
    _case(
        "near miss: a passed challenge too old to clear a positive screen",
        OUD,
        LFT_OK,
        RESCUE,
        c.urine_opiates("positive", when=-13),
        c.naloxone_challenge("passed", when=-12),
        fires={"uds-positive": "critical"},
    ),
    _case(
        "pregnancy diagnosis is not hidden by a male gender marker",
        *READY,
        c.condition(c.ICD10, "Z33.1", "Pregnant state"),
        prefetch_override={"patient": {"resourceType": "Patient", "id": "pat-tests-1", "gender": "male"}},
        fires={"pregnancy": "warning"},
    ),
    _case(
        "near miss: pregnancy diagnosis from three years ago",
        *READY,
        c.condition(c.ICD10, "Z3A.12", "12 weeks gestation", onset=-1100),
        absent=("pregnancy",),
    ),
    _case(
        "near miss: an old encounter diagnosis of withdrawal",
        *READY,
        c.condition(c.ICD10, "F11.23", "Opioid dependence with withdrawal", clinical=None, onset=-700),
        absent=("opioid-withdrawal",),
    ),
    _case(
        "near miss: hepatitis that has abated",
        *READY,
        c.condition(c.ICD10, "B15.9", "Hepatitis A") | {"abatementDateTime": c.day(-300)},
        absent=("hepatic-contraindication",),
    ),
    _case(
        "near miss: a compounded oral liquid is low-dose naltrexone, not the injection",
        order=c.ldn_order(1, text="naltrexone 1 mg/mL oral suspension (compounded)"),
        absent=("xr-dose", "ldn-formulation"),
        fires={"ldn-titration": "info"},
    ),
    _case(
        "near miss: 'Dr' in a product name is not delayed-release",
        order=c.ldn_order(1.5, text="naltrexone 1.5 mg capsule per Dr Smith (compounded)"),
        absent=("ldn-formulation",),
    ),
    _case(
        "an NDC-only unnamed medication in the history cannot be ruled out",
        *READY,
        c.medication_request(
            {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0406-0552-01"}]}, authored=-2
        ),
        fires={"opioid-history-unverified": "warning"},
    ),
    _case(
        "a methadone taper ending 5 days ago",
        *READY,
        c.methadone_taper(),
        fires={"opioid-recent": "critical"},
    ),
]
