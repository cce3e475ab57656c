"""Everything clinical the service loads from ``rules/`` at start-up, checked together."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cds_service.cards import EVIDENCE, TEMPLATE_NAMES
from cds_service.engine import RuleEngine
from cds_service.facts import FACT_NAMES
from cds_service.policy import Policy, load_policy
from cds_service.rulebook import RuleBook, load_rulebook
from cds_service.suggestions import BUILDERS
from cds_service.terminology import Terminology, load_terminology

# Value sets the fact code looks up by id: a missing one is a start-up error, not a silent miss.
REQUIRED_VALUESETS = (
    "naltrexone-products",
    "naltrexone-extended-release-injection",
    "naltrexone-bupropion",
    "morphine-naltrexone",
    "commercial-naltrexone-tablets",
    "opioid-medications",
    "long-acting-opioids",
    "depot-buprenorphine",
    "antidiarrheal-opioids",
    "naloxone-rescue",
    "opioid-urine-screens",
    "alt-tests",
    "ast-tests",
    "bilirubin-total-tests",
    "hcg-tests",
    "pregnancy-status-observation",
    "pregnancy-answers",
    "result-positive",
    "result-negative",
    "opioid-use-disorder",
    "opioid-withdrawal",
    "alcohol-use-disorder",
    "acute-hepatitis-or-liver-failure",
    "decompensated-cirrhosis",
    "cirrhosis",
    "liver-decompensation-events",
    "pregnancy-conditions",
    "naltrexone-allergens",
    "naloxone-allergens",
)


@dataclass(frozen=True)
class Knowledge:
    terminology: Terminology
    policy: Policy
    rulebook: RuleBook
    engine: RuleEngine
    fingerprint: str
    """Digest of every rule, value set, lexicon and policy file loaded: what exactly advised."""

    @property
    def version(self) -> str:
        return f"{self.rulebook.version}+{self.fingerprint}"


@cache
def load_knowledge(rules_dir: Path, policy_file: Path | None = None) -> Knowledge:
    """Loaded once per process and set of files: durable-rules never frees a ruleset it has built."""
    terminology = load_terminology(rules_dir)
    for name in REQUIRED_VALUESETS:
        terminology.valuesets.get(name)
    policy = load_policy(rules_dir, policy_file)
    rulebook = load_rulebook(
        rules_dir / "rules.yaml",
        policy,
        fact_names=FACT_NAMES,
        template_names=TEMPLATE_NAMES,
        evidence_names=EVIDENCE,
        suggestion_names=BUILDERS,
    )
    return Knowledge(
        terminology=terminology,
        policy=policy,
        rulebook=rulebook,
        engine=RuleEngine(rulebook),
        fingerprint=_fingerprint(rules_dir, policy_file),
    )


def _fingerprint(rules_dir: Path, policy_file: Path | None) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in rules_dir.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json"))
    for path in [*files, *([policy_file] if policy_file else [])]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]
