"""Everything clinical the service loads from ``rules/`` at start-up, checked together.

The names the rule book may use (facts, placeholders, evidence lists, suggestions) and the value sets the
fact domains read are given by the caller (``RuleVocabulary``): this package knows the files, not the code
that reads the record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cds_service.engine import RuleEngine
from cds_service.knowledge.policy import Policy, load_policy
from cds_service.knowledge.rulebook import RuleBook, load_rulebook
from cds_service.knowledge.terminology import Terminology, load_terminology


@dataclass(frozen=True)
class RuleVocabulary:
    facts: frozenset[str]
    placeholders: frozenset[str]
    evidence: frozenset[str]
    suggestions: frozenset[str]
    valuesets: frozenset[str]
    """Value sets the code looks up by id: a missing one is a start-up error, not a silent miss."""


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
def load_knowledge(rules_dir: Path, policy_file: Path | None, vocabulary: RuleVocabulary) -> Knowledge:
    """Loaded once per process and set of files: durable-rules never frees a ruleset it has built."""
    terminology = load_terminology(rules_dir)
    for name in sorted(vocabulary.valuesets):
        terminology.valuesets.get(name)
    policy = load_policy(rules_dir, policy_file)
    rulebook = load_rulebook(
        rules_dir / "rules.yaml",
        policy,
        fact_names=vocabulary.facts,
        template_names=vocabulary.placeholders,
        evidence_names=vocabulary.evidence,
        suggestion_names=vocabulary.suggestions,
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
