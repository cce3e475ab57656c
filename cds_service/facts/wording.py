"""How facts are written on a card: names, dates, counts. Shared by every domain's placeholders.

A card is read in seconds: dates as "3 Dec 2026" (unambiguous in every locale), drugs by their ingredient
("oxycodone", not "oxycodone hydrochloride 5 MG Oral Tablet"), one patient fact per line with its FHIR
reference last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SALTS = re.compile(
    r"^(hydrochloride|hcl|sulfate|sulphate|tartrate|bitartrate|citrate|phosphate|acetate|mesylate|besylate|"
    r"maleate|sodium|potassium|bromide|hydrobromide|napsylate|succinate|chloride|er|xr|sr|ir|ext|extended|"
    r"release|oral|tablet|tablets|capsule|capsules|injection|solution|suspension|powder|patch|spray|nasal|form|"
    r"product|dose|dosage)$",
    re.IGNORECASE,
)


def names(items: Iterable[str], limit: int = 2) -> str:
    """ "a, b and 3 more": record names, each shortened, duplicates once."""
    unique = list(dict.fromkeys(short(n) for n in items))
    if not unique:
        return "none"
    if len(unique) <= limit:
        return and_list(unique)
    return f"{', '.join(unique[:limit])} and {len(unique) - limit} more"


def drug_names(products: Iterable[str], limit: int = 2) -> str:
    """ "oxycodone and fentanyl": the ingredients of product strings, as a clinician says them."""
    return names((ingredient_name(p) for p in products), limit)


def and_list(items: Iterable[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    listed = list(dict.fromkeys(items))
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1] if listed else ""


def short(name: str, limit: int = 50) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def day(value: date | None) -> str:
    """A date as a card shows it: "3 Dec 2026"."""
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}" if value else "unknown date"


def since(today: date, days: int) -> str:
    """The first day of a look-back of ``days`` days."""
    return day(today - timedelta(days=days))


def ingredient_name(product: str) -> str:
    """The drug a product string names, as a clinician says it: "oxycodone hydrochloride 5 MG Oral
    Tablet" -> "oxycodone", "12 HR bupropion ... / naltrexone ..." -> "bupropion/naltrexone"."""
    text = re.sub(r"^\s*\d+\s*hr\s+", "", product, flags=re.IGNORECASE)
    found: list[str] = []
    for part in re.split(r"\s+/\s+|\s*\+\s*|,\s*", text):
        words = []
        for word in part.split():
            if word[:1].isdigit() or word[:1] in "([<" or word.startswith("."):
                break
            if not _SALTS.match(word):
                words.append(word.lower())
        if words:
            found.append(" ".join(words))
    return "/".join(dict.fromkeys(found)) or short(product)


_STRENGTH_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|micrograms?|ug|g|units?)\b", re.IGNORECASE)


def drug_label(product: str) -> str:
    """A product as a card lists it: its ingredient and first strength ("oxycodone 5 mg")."""
    name = ingredient_name(product)
    strength = _STRENGTH_TEXT.search(product)
    if strength is None or "/" in name:
        return name
    unit = {"micrograms": "mcg", "microgram": "mcg", "ug": "mcg"}.get(
        strength.group(2).lower(), strength.group(2).lower()
    )
    return f"{name} {float(strength.group(1)):g} {unit}"


def fact_line(what: str, detail: str, reference: str) -> str:
    """One patient fact on a card: what, its status or date, and its FHIR reference last."""
    return f"{short(what)}, {detail} ({reference})" if detail else f"{short(what)} ({reference})"
