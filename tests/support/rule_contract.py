"""The public contract of ../shared/design/architecture.md, as the tests check it."""

from __future__ import annotations

# The public contract (../shared/design/architecture.md): rule id -> indicators it may carry.
CONTRACT = {
    "opioid-active": {"critical"},
    "opioid-recent": {"critical", "warning"},
    "opioid-history-unverified": {"warning"},
    "opioid-withdrawal": {"critical"},
    # issue 11: a newer negative screen of the same analytes, the wait met, is a warning
    "uds-positive": {"critical", "warning"},
    "uds-needed": {"warning"},
    "naloxone-challenge-failed": {"critical"},
    "naloxone-challenge-needed": {"info"},
    "hepatic-contraindication": {"critical", "warning"},
    # issue 11: compensated cirrhosis is at least hepatic-impairment, as information
    "hepatic-impairment": {"warning", "info"},
    "lft-elevated": {"warning", "critical"},
    "lft-needed": {"info"},
    # issue 11: a non-immune intolerance (nausea, low criticality) is a warning
    "hypersensitivity": {"critical", "warning"},
    # issue 11: naltrexone/bupropion is contraindicated in pregnancy by its label
    "pregnancy": {"warning", "critical"},
    "test-dose": {"warning"},
    "xr-dose": {"warning"},
    "naloxone-rescue": {"info"},
    "dose-unrecognized": {"warning"},
    "ldn-titration": {"info", "warning"},
    "ldn-max-dose": {"warning"},
    "ldn-bedtime": {"info"},
    "ldn-formulation": {"warning"},
    "opioid-blockade": {"warning"},
    "opioid-interaction": {"info"},
}

# Rule ids this project added to the contract (issue 11 and earlier), with the indicators they may carry.
ADDITIONS = {
    "patient-data-unverified": {"warning"},
    "result-unreadable": {"warning"},
    "naloxone-hypersensitivity": {"warning", "critical"},
    # surgery planned inside the hold (warning), or ordered with no date (info)
    "planned-procedure": {"warning", "info"},
    # a second naltrexone product on top of one in use (an oral order while an injection still blocks)
    "duplicate-therapy": {"warning"},
    # issue 15: an order naming another patient than the chart is answered, not refused
    "patient-mismatch": {"critical"},
}
