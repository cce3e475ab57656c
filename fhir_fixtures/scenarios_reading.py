"""Scenarios of issue 11, the clinical reading of the record: each class of input with its near miss.

Written from the clinical sources (``../shared/clinical``, section G: result wording, units, substances,
naloxone allergy, planned surgery, decompensation, time zones, continuation, pregnancy outcomes, doses) and
the rule contract, as of the reference date; never from the service's output.
"""

from __future__ import annotations

from typing import Any

from fhir_fixtures import clinical as c
from fhir_fixtures.catalogue import GUIDANCE, add, named, workup
from fhir_fixtures.requests import naltrexone_order

TABLET = ("1483744", "naltrexone hydrochloride 50 MG Oral Tablet")
ALCOHOL = ("F10.20", "Alcohol dependence, uncomplicated")
START_UP = ("test-dose", "uds-needed", "naloxone-challenge-needed")


def challenge_said(said: str, *, when: int = -1, **value: Any) -> dict[str, Any]:
    """A naloxone challenge recorded in words (or, with ``value``, as another value type)."""
    fields = value or {"valueString": said}
    return c.observation(
        "naloxone-challenge", "Naloxone challenge", when=when, system=c.PROJECT_OBSERVATION, **fields
    )


def cup(said: str, *, when: int = -1) -> dict[str, Any]:
    """A point-of-care urine drug cup under the clinic's own code: only its name says what it is."""
    return c.observation(
        "POCUDS9", "Urine drug screen, 9-panel cup (point of care)", when=when, system="urn:oid:1.2.3.4",
        valueString=said,
    )  # fmt: skip


def alcohol_use_disorder() -> dict[str, Any]:
    return named(c.condition(c.ICD10, *ALCOHOL, onset=-200), "aud-1")


def with_dose(order: dict[str, Any], quantity: dict[str, Any]) -> dict[str, Any]:
    order["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": quantity}]
    return order


def xr_by(quantity: dict[str, Any], medication: dict[str, Any] | None = None) -> dict[str, Any]:
    order = with_dose(c.xr_order(), quantity)
    if medication is not None:
        order["medicationCodeableConcept"] = medication
    return order


def build_reading() -> None:
    _result_text()
    _units()
    _substances()
    _naloxone_allergy()
    _planned_surgery()
    _decompensation()
    _time_zones()
    _continuation()
    _allergy_or_intolerance()
    _newer_screens()
    _pregnancy_ended()
    _doses()
    _naloxone_rescue()


def _result_text() -> None:
    add(
        "challenge-text-not-passed",
        "Naloxone challenge written as 'not passed'",
        "The challenge note reads 'Not passed - yawning and rhinorrhoea 10 min after naloxone 0.8 mg SC': "
        "withdrawal was seen, so the challenge failed.",
        c.scenario(
            challenge_said("Not passed - yawning and rhinorrhoea 10 min after naloxone 0.8 mg SC"),
            *workup(challenge=False),
        ),
        cards={"naloxone-challenge-failed": "critical"},
        absent=GUIDANCE,
    )
    add(
        "near-miss-challenge-withdrawal-signs-none",
        "Naloxone challenge: 'withdrawal signs: none'",
        "The flowsheet reads 'Withdrawal signs: none after 0.8 mg SC, observed 20 min': the challenge passed.",
        c.scenario(
            challenge_said("Withdrawal signs: none after 0.8 mg SC, observed 20 min"),
            *workup(challenge=False),
        ),
        cards={"test-dose": "warning"},
        absent=("naloxone-challenge-failed", "naloxone-challenge-needed", "result-unreadable"),
    )
    add(
        "poc-cup-fentanyl-positive",
        "Point-of-care cup: fentanyl positive among nine analytes",
        "A locally coded 9-panel cup yesterday reads 'AMP neg, BZO neg, COC neg, THC pos, OPI neg, OXY neg, "
        "MTD neg, BUP neg, FEN POS': fentanyl is an opioid, and a negative opiates strip does not clear it.",
        c.scenario(
            cup("AMP neg, BZO neg, COC neg, THC pos, OPI neg, OXY neg, MTD neg, BUP neg, FEN POS"),
            *workup(uds=False, challenge=False),
        ),
        cards={"uds-positive": "critical"},
        absent=("result-unreadable", *GUIDANCE),
    )
    add(
        "near-miss-poc-cup-thc-only",
        "Point-of-care cup: only THC positive",
        "The same cup reads 'AMP neg, THC pos, OPI neg, FEN neg, BUP neg, MTD neg, OXY neg': no opioid is "
        "positive, and the cup counts as a recent opioid screen.",
        c.scenario(cup("AMP neg, THC pos, OPI neg, FEN neg, BUP neg, MTD neg, OXY neg"), *workup(uds=False)),
        cards={"test-dose": "warning"},
        absent=("uds-positive", "uds-needed", "result-unreadable"),
    )
    add(
        "uds-dilute-unreadable",
        "Opiates screen 'NEG DILUTE'",
        "Yesterday's opiates screen reads 'NEG DILUTE': a dilute specimen cannot show the patient opioid-free.",
        c.scenario(c.urine_opiates("NEG DILUTE", when=-1), *workup(uds=False)),
        cards={"result-unreadable": "warning"},
        absent=("uds-positive", "uds-needed"),
    )
    add(
        "near-miss-uds-negative-with-disclaimer",
        "Opiates screen negative with the lab's disclaimer",
        "The screen reads 'Negative. Presumptive result; confirmation by LC-MS/MS available on request.': a "
        "negative result, the disclaimer notwithstanding.",
        c.scenario(
            c.urine_opiates(
                "Negative. Presumptive result; confirmation by LC-MS/MS available on request.", when=-1
            ),
            *workup(uds=False),
        ),
        cards={"test-dose": "warning"},
        absent=("result-unreadable", "uds-positive", "uds-needed"),
    )
    add(
        "challenge-recorded-as-boolean",
        "Naloxone challenge recorded as true, at signing",
        "A flowsheet stored the challenge as valueBoolean true: 'true' could mean passed or withdrawal seen, so "
        "signing shows a warning asking for a readable result.",
        c.scenario(challenge_said("", valueBoolean=True), *workup(challenge=False), hook="order-sign"),
        cards={"result-unreadable": "warning"},
        absent=("naloxone-challenge-failed",),
    )
    add(
        "near-miss-challenge-coded-passed-at-signing",
        "Naloxone challenge coded as passed, at signing",
        "The challenge is coded SNOMED 260385009 Negative (passed): nothing to say at signing.",
        c.scenario(*workup(), hook="order-sign"),
        absent=("result-unreadable", "naloxone-challenge-failed"),
    )


def _units() -> None:
    add(
        "alt-greek-mu-katal",
        "ALT in μkat/L written with the Greek letter mu",
        "ALT 3.0 μkat/L (U+03BC, not the micro sign) with no reference range: 180 U/L, 4.5 times the "
        "default upper limit of 40 U/L.",
        c.scenario(c.lab_value("1742-6", "ALT", 3.0, "\u03bckat/L", when=-10), *workup(lft=False)),
        cards={"lft-elevated": "warning"},
        absent=("result-unreadable", "lft-needed"),
    )
    add(
        "ast-micro-sign-katal-critical",
        "AST 6 µkat/L with the micro sign",
        "AST 6 µkat/L (U+00B5): 360 U/L, 9 times the default upper limit.",
        c.scenario(c.lab_value("1920-8", "AST", 6.0, "\u00b5kat/L", when=-10), *workup(lft=False)),
        cards={"lft-elevated": "critical"},
        absent=("result-unreadable", "lft-needed"),
    )
    add(
        "alt-unit-unconvertible",
        "ALT in a unit nobody can convert",
        "ALT 2.0 mmol/h with no reference range: it cannot be compared with an upper limit, so the card says so "
        "instead of reading it as normal.",
        c.scenario(c.lab_value("1742-6", "ALT", 2.0, "mmol/h", when=-10), *workup(lft=False)),
        cards={"result-unreadable": "warning"},
        absent=("lft-elevated", "lft-needed"),
    )
    add(
        "near-miss-alt-in-iu-per-litre",
        "ALT 35 IU/L",
        "IU/L and U/L are the same for ALT: 35 IU/L under a laboratory limit of 40 is normal.",
        c.scenario(c.lab_value("1742-6", "ALT", 35, "IU/L", when=-10, high=40), *workup(lft=False)),
        cards={"test-dose": "warning"},
        absent=("lft-elevated", "result-unreadable", "lft-needed"),
    )


def _substances() -> None:
    add(
        "kratom-taken-daily",
        "Kratom taken daily",
        "The patient reports kratom powder 3 g three times a day (MedicationStatement, active): kratom's "
        "alkaloids are mu-opioid agonists, and naltrexone precipitates withdrawal in daily users.",
        c.scenario(_kratom_statement(), *workup()),
        cards={"opioid-active": "critical"},
        absent=GUIDANCE,
    )
    add(
        "mitragynine-screen-positive",
        "Urine mitragynine positive",
        "A send-out urine test for mitragynine (kratom) was positive 3 days ago, with no naloxone challenge since.",
        c.scenario(
            c.observation(
                "MITRA-U", "Mitragynine, urine", when=-3, system="urn:oid:1.2.3.4", valueString="Positive"
            ),
            *workup(uds=False, challenge=False),
        ),
        cards={"uds-positive": "critical"},
        absent=GUIDANCE,
    )
    add(
        "tramadol-screen-positive",
        "Urine tramadol screen positive",
        "A tramadol urine screen (LOINC 19710-3, not among the CDC opioid screening codes) was positive "
        "2 days ago: tramadol is an opioid.",
        c.scenario(
            c.observation(
                "19710-3", "Tramadol [Presence] in Urine by Screen method", when=-2, valueString="POS"
            ),
            *workup(uds=False, challenge=False),
        ),
        cards={"uds-positive": "critical"},
        absent=GUIDANCE,
    )
    add(
        "hydromorphone-injection-given",
        "Hydromorphone injection given 3 days ago",
        "A patient with opioid use disorder had hydromorphone 1 mg IV in the emergency department 3 days ago.",
        c.scenario(c.administration(("", "HYDROmorphone HCl 1 mg/mL injection"), given=-3), *workup()),
        cards={"opioid-recent": "critical"},
        absent=("opioid-active", *GUIDANCE),
    )
    add(
        "butorphanol-nasal-with-low-dose",
        "Butorphanol nasal spray with a low-dose start",
        "Butorphanol nasal spray (a mixed agonist-antagonist, an opioid) is prescribed and active; low-dose "
        "naltrexone is ordered.",
        c.scenario(
            c.medication_request(c.rx(None, "butorphanol tartrate 10 MG/ML Nasal Spray"), authored=-5),
            order=c.ldn_order(),
        ),
        cards={"opioid-active": "critical"},
        absent=("ldn-titration", "ldn-bedtime"),
    )
    add(
        "diphenoxylate-interaction",
        "Diphenoxylate/atropine in use",
        "Diphenoxylate with atropine, an opioid antidiarrheal, is taken for diarrhoea: naltrexone may blunt it.",
        c.scenario(
            c.medication_request(
                c.rx(None, "diphenoxylate hydrochloride 2.5 MG / atropine sulfate 0.025 MG Oral Tablet"),
                authored=-5,
            ),
            *workup(),
        ),
        cards={"opioid-interaction": "info"},
        absent=("opioid-active", "opioid-recent"),
    )
    add(
        "near-miss-pentazocine-naloxone-is-an-opioid",
        "Pentazocine/naloxone: an opioid, not a naloxone allergy",
        "Pentazocine with naloxone is prescribed and active: the opioid conflict is the card; its naloxone makes "
        "it neither a rescue kit nor a naloxone allergy.",
        c.scenario(
            c.medication_request(c.rx(None, "pentazocine 50 MG / naloxone 0.5 MG Oral Tablet"), authored=-5),
            *workup(rescue=False),
        ),
        cards={"opioid-active": "critical"},
        absent=("naloxone-hypersensitivity", *GUIDANCE),
    )


def _kratom_statement() -> dict[str, Any]:
    statement = c.statement(c.OXYCODONE, start=-120)
    statement["medicationCodeableConcept"] = {
        "text": "Kratom (Mitragyna speciosa) powder 3 g three times a day"
    }
    return named(statement, "kratom-ms-1")


def _naloxone_allergy() -> None:
    naloxone = c.rx("7242", "naloxone")
    mild = c.allergy(naloxone)
    mild["reaction"] = [{"manifestation": [{"text": "nausea"}], "severity": "mild"}]
    add(
        "naloxone-allergy-mild",
        "Naloxone allergy on record",
        "An active naloxone allergy (nausea, mild): cross-sensitivity with naltrexone is unknown; no naloxone "
        "challenge or naloxone kit is suggested.",
        c.scenario(named(mild, "naloxone-allergy-1"), *workup(challenge=False, rescue=False)),
        cards={"naloxone-hypersensitivity": "warning"},
        absent=("naloxone-challenge-needed", "naloxone-rescue", "hypersensitivity"),
    )
    severe = c.allergy(naloxone)
    severe["criticality"] = "high"
    severe["reaction"] = [{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}]
    add(
        "naloxone-anaphylaxis",
        "Anaphylaxis to naloxone",
        "Anaphylaxis after naloxone, high criticality: TIP 63 and the Vivitrol monograph list naloxone "
        "sensitivity as a contraindication.",
        c.scenario(named(severe, "naloxone-allergy-2"), *workup(challenge=False, rescue=False)),
        cards={"naloxone-hypersensitivity": "critical"},
        absent=("naloxone-challenge-needed", "naloxone-rescue"),
    )
    add(
        "near-miss-naloxone-allergy-refuted",
        "Naloxone allergy refuted",
        "A naloxone allergy entry whose verification status is refuted: there is no allergy to warn about.",
        c.scenario(c.allergy(naloxone, verification="refuted"), *workup()),
        cards={"test-dose": "warning"},
        absent=("naloxone-hypersensitivity",),
    )


def _planned_surgery() -> None:
    add(
        "surgery-in-5-days-oral",
        "Cholecystectomy in 5 days, oral start",
        "An active order for laparoscopic cholecystectomy (CPT 47562) in 5 days: opioid analgesia will be "
        "needed within the 7 days TIP 63 names.",
        c.scenario(named(c.surgery_order(in_days=5), "surgery-1"), *workup(), hook="order-sign"),
        cards={"planned-procedure": "warning"},
        absent=("test-dose",),
    )
    add(
        "surgery-booked-in-21-days-injection",
        "Knee arthroplasty booked in 21 days, injection",
        "A booked appointment for a total knee arthroplasty in 21 days: ASAM advises stopping the injection 30 "
        "days before elective surgery.",
        c.scenario(
            named(c.appointment("Right total knee arthroplasty, OR 4", in_days=21), "appointment-1"),
            *workup(),
            order=c.xr_order(),
        ),
        cards={"planned-procedure": "warning"},
        absent=("xr-dose",),
    )
    add(
        "surgery-ordered-without-date",
        "Hernia repair ordered, no date yet",
        "An active order for inguinal hernia repair has no date: the card asks to confirm it is not within the "
        "week.",
        c.scenario(
            named(c.surgery_order("Inguinal hernia repair", in_days=None, cpt="49505"), "surgery-2"),
            *workup(),
        ),
        cards={"planned-procedure": "info"},
    )
    add(
        "near-miss-surgery-in-20-days-oral",
        "Surgery in 20 days, oral start",
        "Surgery is planned in 20 days: outside the 7 days that matter for oral naltrexone.",
        c.scenario(c.surgery_order(in_days=20), *workup()),
        cards={"test-dose": "warning"},
        absent=("planned-procedure",),
    )
    add(
        "near-miss-surgical-follow-up-visit",
        "A surgical follow-up visit in 2 days",
        "A booked 'post-op check' in the surgery clinic is a visit, not an operation.",
        c.scenario(
            c.appointment("Post-op check", in_days=2, serviceCategory=[{"text": "General surgery"}]),
            *workup(),
        ),
        cards={"test-dose": "warning"},
        absent=("planned-procedure",),
    )


def _decompensation() -> None:
    child_pugh_c = c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver")
    child_pugh_c["code"]["text"] = "Cirrhosis of liver, Child-Pugh class C (score 11)"
    add(
        "child-pugh-c-in-the-diagnosis-text",
        "Cirrhosis coded as unspecified, Child-Pugh C in its text",
        "The problem is coded K74.60 (unspecified cirrhosis), but its text says Child-Pugh class C: "
        "decompensated disease, with naltrexone exposure up to 10 times higher.",
        c.scenario(named(child_pugh_c, "cirrhosis-1"), *workup()),
        cards={"hepatic-impairment": "warning"},
    )
    add(
        "portal-hypertension-coded",
        "Portal hypertension on the problem list",
        "Portal hypertension (K76.6) is a decompensation event.",
        c.scenario(c.condition(c.ICD10, "K76.6", "Portal hypertension"), *workup()),
        cards={"hepatic-impairment": "warning"},
    )
    add(
        "child-pugh-score-observation",
        "Child-Pugh score 11 recorded as an Observation",
        "A Child-Pugh score of 11 (class C) was recorded last month.",
        c.scenario(
            c.observation(
                "CP-SCORE", "Child-Pugh score", when=-30, system="urn:oid:1.2.3.4", valueInteger=11
            ),
            *workup(),
        ),
        cards={"hepatic-impairment": "warning"},
    )
    compensated = c.condition(c.ICD10, "K74.60", "Unspecified cirrhosis of liver")
    compensated["code"]["text"] = "Cirrhosis without ascites or varices"
    add(
        "near-miss-cirrhosis-without-ascites-or-varices",
        "Cirrhosis 'without ascites or varices'",
        "The text names ascites and varices only to say they are absent: compensated cirrhosis, information.",
        c.scenario(compensated, *workup()),
        cards={"hepatic-impairment": "info"},
    )


def _time_zones() -> None:
    tokyo = c.dispense(c.OXYCODONE, handed=-9, days_supply=1)
    tokyo["whenHandedOver"] = c.day(-9) + "T06:00:00+09:00"  # still the previous day in UTC
    add(
        "tz-dispense-stamped-plus-nine",
        "A dispense stamped at 06:00 +09:00",
        "One day of oxycodone handed over 9 days ago at 06:00 Tokyo time (the evening before in UTC): the "
        "supply ends on its own calendar day, so the 10 opioid-free days are not complete.",
        c.scenario(named(tokyo, "oxycodone-md-tz-1"), *workup()),
        cards={"opioid-recent": "critical"},
    )
    honolulu = c.dispense(c.OXYCODONE, handed=-10, days_supply=1)
    honolulu["whenHandedOver"] = c.day(-10) + "T20:00:00-10:00"  # already the next day in UTC
    add(
        "near-miss-tz-dispense-stamped-minus-ten",
        "A dispense stamped at 20:00 -10:00",
        "One day of oxycodone handed over 10 days ago at 20:00 Honolulu time (the next day in UTC): counted on "
        "its own day, the 10 opioid-free days are complete.",
        c.scenario(named(honolulu, "oxycodone-md-tz-2"), *workup()),
        cards={"test-dose": "warning"},
        absent=("opioid-recent", "opioid-active"),
    )
    screen = c.observation(
        "59673-4",
        "fentaNYL [Presence] in Urine by Screen method",
        when=-1,
        valueString="Presumptive positive",
    )
    screen["effectiveDateTime"] = c.day(-1) + "T00:40:00Z"
    later = challenge_said("Passed - no withdrawal signs after naloxone 0.8 mg SC, observed 20 min")
    later["effectiveDateTime"] = c.day(-2) + "T21:15:00-05:00"  # 02:15 UTC the next day: after the screen
    add(
        "tz-challenge-after-the-screen-in-another-zone",
        "Challenge passed after a positive screen, recorded in another time zone",
        "Fentanyl screen at 00:40 UTC; naloxone challenge passed at 21:15 New York time the evening 'before', "
        "which is 02:15 UTC, after the screen: a passed challenge after the positive screen lifts it.",
        c.scenario(screen, later, *workup(uds=False, challenge=False)),
        cards={"test-dose": "warning"},
        absent=("uds-positive", "naloxone-challenge-needed"),
    )
    earlier = challenge_said("Passed - no withdrawal signs after naloxone 0.8 mg SC, observed 20 min")
    earlier["effectiveDateTime"] = c.day(-2) + "T19:15:00-05:00"  # 00:15 UTC: before the screen
    add(
        "near-miss-tz-challenge-before-the-screen",
        "Challenge passed before a positive screen",
        "The same challenge at 19:15 New York time is 00:15 UTC, before the 00:40 UTC screen: it cannot lift it.",
        c.scenario(screen, earlier, *workup(uds=False, challenge=False)),
        cards={"uds-positive": "critical"},
    )


def _continuation() -> None:
    add(
        "continuation-oral-refill",
        "Oral naltrexone refill while the supply lasts",
        "Naltrexone 50 mg daily dispensed 25 days ago for 30 days: the patient is on naltrexone, so no test "
        "dose, urine screen or naloxone challenge is asked for again.",
        c.scenario(
            named(c.dispense(TABLET, handed=-25, days_supply=30), "naltrexone-md-1"),
            *workup(uds=False, challenge=False),
        ),
        absent=(*START_UP, "duplicate-therapy"),
    )
    add(
        "continuation-xr-next-injection",
        "The next monthly injection",
        "The last injection was 25 days ago; the next one is ordered. No naloxone kit is on file.",
        c.scenario(
            named(c.administration(c.VIVITROL, given=-25), "vivitrol-ma-1"),
            *workup(uds=False, challenge=False, rescue=False),
            order=c.xr_order(),
        ),
        cards={"naloxone-rescue": "info"},
        absent=(*START_UP, "duplicate-therapy", "xr-dose"),
    )
    test_dose = naltrexone_order("test-dose-1")
    test_dose["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 25
    test_dose["dosageInstruction"][0]["timing"]["repeat"] = {"count": 1}
    add(
        "test-dose-and-follow-on-at-signing",
        "The test dose and its follow-on signed together",
        "At signing, the session holds the 25 mg test dose and the 50 mg daily order from the next day: the "
        "start is planned, so no test-dose card again; but no urine screen is on record, and a positive one "
        "would contraindicate the first dose, so that warning stays.",
        c.scenario(*workup(uds=False, challenge=False), drafts=[test_dose], hook="order-sign"),
        cards={"uds-needed": "warning"},
        absent=("test-dose",),
    )
    add(
        "duplicate-oral-during-injection",
        "Oral naltrexone 10 days after an injection",
        "The patient had the injection 10 days ago; oral naltrexone 50 mg daily is now ordered: the injection "
        "still blocks, so the oral order duplicates it.",
        c.scenario(
            named(c.administration(c.VIVITROL, given=-10), "vivitrol-ma-2"),
            *workup(uds=False, challenge=False),
        ),
        cards={"duplicate-therapy": "warning"},
        absent=START_UP,
    )
    add(
        "near-miss-injection-restart-after-a-lapse",
        "An injection restarted after 8 weeks",
        "The last injection was 56 days ago: this is a new start, with its urine screen and challenge.",
        c.scenario(
            named(c.administration(c.VIVITROL, given=-56), "vivitrol-ma-3"),
            *workup(uds=False, challenge=False),
            order=c.xr_order(),
        ),
        cards={"uds-needed": "warning", "naloxone-challenge-needed": "info"},
        absent=("duplicate-therapy",),
    )


def _allergy_or_intolerance() -> None:
    intolerance = c.allergy(c.rx(*TABLET))
    intolerance.update(
        {
            "type": "intolerance",
            "criticality": "low",
            "reaction": [{"manifestation": [{"text": "Nausea"}], "severity": "mild"}],
        }
    )
    add(
        "naltrexone-intolerance-nausea",
        "Naltrexone intolerance: nausea",
        "An intolerance (low criticality) with nausea is not hypersensitivity: a warning, not a contraindication.",
        c.scenario(intolerance, *workup()),
        cards={"hypersensitivity": "warning"},
    )
    allergy = c.allergy(c.rx(*TABLET))
    allergy.update({"type": "allergy", "reaction": [{"manifestation": [{"text": "Urticaria"}]}]})
    add(
        "naltrexone-allergy-urticaria",
        "Naltrexone allergy: urticaria",
        "An allergy with urticaria is hypersensitivity: the labelled contraindication.",
        c.scenario(allergy, *workup()),
        cards={"hypersensitivity": "critical"},
        absent=GUIDANCE,
    )


def _newer_screens() -> None:
    add(
        "uds-positive-then-negative-after-the-wait",
        "Positive opiates screen 12 days ago, negative yesterday",
        "Opiates positive 12 days ago, negative yesterday for the same analyte, and the 10-day wait since the "
        "positive has passed: a warning naming both, and no request to repeat the screen.",
        c.scenario(
            c.urine_opiates("POS", when=-12),
            c.urine_opiates("NEG", when=-1),
            *workup(uds=False, challenge=False),
        ),
        cards={"uds-positive": "warning"},
        absent=("uds-needed",),
    )
    add(
        "near-miss-fentanyl-positive-then-opiates-negative",
        "Fentanyl positive, then only opiates negative",
        "Fentanyl positive 12 days ago; yesterday's screen tested opiates only (which do not detect fentanyl): "
        "the positive stands.",
        c.scenario(
            c.observation(
                "59673-4", "fentaNYL [Presence] in Urine by Screen method", when=-12, valueString="POS"
            ),
            c.urine_opiates("NEG", when=-1),
            *workup(uds=False, challenge=False),
        ),
        cards={"uds-positive": "critical"},
    )


def _pregnancy_ended() -> None:
    pregnant = c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-270)
    add(
        "pregnancy-ended-by-delivery",
        "Delivered 3 weeks ago; 'pregnant' still on the problem list",
        "Z33.1 was never resolved, but a single live birth (Z37.0) is recorded 21 days ago: the pregnancy has "
        "ended.",
        c.scenario(pregnant, c.condition(c.ICD10, "Z37.0", "Single live birth", onset=-21), *workup()),
        absent=("pregnancy",),
    )
    loss = c.procedure("urn:oid:1.2.3.4", "DC", "Suction curettage for missed abortion", performed=-10)
    add(
        "pregnancy-ended-by-a-loss",
        "Suction curettage for a missed abortion 10 days ago",
        "A completed procedure for a missed abortion ends the pregnancy on record.",
        c.scenario(c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60), loss, *workup()),
        absent=("pregnancy",),
    )
    add(
        "near-miss-pregnant-after-a-previous-caesarean",
        "Pregnant, with a scar from a previous caesarean",
        "O34.21 names an earlier caesarean delivery but is a condition of the current pregnancy.",
        c.scenario(
            c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60),
            c.condition(
                c.ICD10, "O34.21", "Maternal care for scar from previous cesarean delivery", onset=-60
            ),
            *workup(),
        ),
        cards={"pregnancy": "warning"},
    )
    add(
        "contrave-in-pregnancy",
        "Naltrexone/bupropion ordered in pregnancy",
        "Naltrexone/bupropion for weight management is contraindicated in pregnancy by its label.",
        c.scenario(
            c.condition(c.ICD10, "Z33.1", "Pregnant state, incidental", onset=-60),
            order=naltrexone_order(medicationCodeableConcept=c.rx(*c.CONTRAVE)),
        ),
        cards={"pregnancy": "critical"},
    )


def _doses() -> None:
    add(
        "xr-ordered-as-one-kit",
        "Injection ordered as '1 kit', by NDC only",
        "Vivitrol identified by its NDC only, ordered as 1 kit every 4 weeks: one kit is the 380 mg dose.",
        c.scenario(
            *workup(),
            order=xr_by(
                {"value": 1, "unit": "kit", "system": c.UCUM, "code": "{kit}"},
                {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "65757-300-01"}]},
            ),
        ),
        absent=("xr-dose", "dose-unrecognized"),
    )
    add(
        "xr-ordered-as-four-millilitres",
        "Injection ordered as 4 mL",
        "The injection ordered as 4 mL of suspension: the 380 mg dose.",
        c.scenario(*workup(), order=xr_by({"value": 4, "unit": "mL", "system": c.UCUM, "code": "mL"})),
        absent=("xr-dose", "dose-unrecognized"),
    )
    solution = c.ldn_order(1.5)
    solution["medicationCodeableConcept"] = {"text": "Naltrexone 1 mg/mL oral solution (compounded)"}
    add(
        "ldn-liquid-in-millilitres",
        "Low-dose naltrexone as 1.5 mL of a 1 mg/mL solution",
        "1.5 mL of a 1 mg/mL compounded solution at bedtime is 1.5 mg: the usual low-dose start.",
        c.scenario(order=with_dose(solution, {"value": 1.5, "unit": "mL", "system": c.UCUM, "code": "mL"})),
        cards={"ldn-titration": "info"},
        absent=("dose-unrecognized", "ldn-max-dose"),
    )
    add(
        "dose-zero-mg",
        "Naltrexone 0 mg daily",
        "The order's dose is 0 mg: the card quotes what was sent instead of saying no dose was stated.",
        c.scenario(
            *workup(),
            order=with_dose(naltrexone_order(), {"value": 0, "unit": "mg", "system": c.UCUM, "code": "mg"}),
        ),
        cards={"dose-unrecognized": "warning"},
    )
    no_concentration = c.ldn_order(1.5)
    no_concentration["medicationCodeableConcept"] = {"text": "Naltrexone oral solution (compounded)"}
    add(
        "ldn-liquid-without-concentration",
        "Low-dose naltrexone in mL with no concentration",
        "4.5 mL of a solution whose concentration is nowhere stated cannot be turned into milligrams.",
        c.scenario(
            order=with_dose(no_concentration, {"value": 4.5, "unit": "mL", "system": c.UCUM, "code": "mL"})
        ),
        cards={"dose-unrecognized": "warning"},
    )
    add(
        "ldn-above-the-maximum-one-card",
        "Low-dose naltrexone 6 mg: one card",
        "6 mg is above the 4.5 mg low-dose maximum: the maximum-dose card says what to do, and the titration "
        "card does not repeat it.",
        c.scenario(order=c.ldn_order(6)),
        cards={"ldn-max-dose": "warning"},
        absent=("ldn-titration", "dose-unrecognized"),
    )
    prescribed = naltrexone_order(
        dispenseRequest={
            "quantity": {"value": 30, "unit": "tablet"},
            "numberOfRepeatsAllowed": 2,
            "expectedSupplyDuration": {"value": 30, "unit": "days", "system": c.UCUM, "code": "d"},
        }
    )
    add(
        "test-dose-dispenses-one-tablet",
        "The test dose dispenses one tablet",
        "A 50 mg daily start for opioid use disorder with 30 tablets and 2 refills: the 25 mg test dose "
        "dispenses one tablet with no refills; the 50 mg follow-on keeps the 30 tablets and 2 refills.",
        c.scenario(*workup(), order=prescribed),
        cards={"test-dose": "warning"},
        suggestions=(
            {
                "rule": "test-dose",
                "type": "update",
                "resourceType": "MedicationRequest",
                "expect": {"dispenseRequest.quantity.value": 1, "dispenseRequest.numberOfRepeatsAllowed": 0},
            },
            {
                "rule": "test-dose",
                "type": "create",
                "resourceType": "MedicationRequest",
                "expect": {"dispenseRequest.quantity.value": 30, "dispenseRequest.numberOfRepeatsAllowed": 2},
            },
        ),
    )


def _naloxone_rescue() -> None:
    add(
        "xr-for-alcohol-no-naloxone",
        "Injection for alcohol use disorder, no naloxone on file",
        "The December 2025 label asks for an overdose reversal agent to be discussed at every injection, "
        "whatever the indication.",
        c.scenario(alcohol_use_disorder(), c.alt(30, when=-20), order=c.xr_order()),
        cards={"naloxone-rescue": "info"},
    )
    add(
        "near-miss-oral-for-alcohol-no-naloxone",
        "Oral naltrexone for alcohol use disorder",
        "Oral naltrexone for alcohol use disorder without opioid use disorder: no rescue card.",
        c.scenario(alcohol_use_disorder(), c.alt(30, when=-20)),
        absent=("naloxone-rescue",),
    )
    add(
        "near-miss-xr-with-nalmefene-on-file",
        "Injection with a nalmefene spray prescribed 3 months ago",
        "Nalmefene nasal spray (Opvee) counts as an overdose reversal agent on file.",
        c.scenario(
            alcohol_use_disorder(),
            c.alt(30, when=-20),
            c.medication_request(
                c.rx(None, "Opvee (nalmefene) 2.7 mg nasal spray"), authored=-90, supply_days=None
            ),
            order=c.xr_order(),
        ),
        absent=("naloxone-rescue",),
    )
