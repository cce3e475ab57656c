"""Reading free-text results: urine drug screens and naloxone challenge notes.

Labs, point-of-care cups and nursing flowsheets write results as text: "NEG", "AMP-, THC+, OPI-, FEN+",
"negative for opiates, positive for fentanyl", "Did not pass naloxone challenge - withdrawal noted",
"withdrawal signs: none". The vocabulary is data (``rules/result_words.yaml``); this module is the grammar:

* the text is normalised (Unicode NFKC, case-folded, dashes unified) and cut into tokens: result words,
  analytes, negations, "for", "all", "except", "only", sentence breaks; disclaimers and control lines
  ("false positives may occur", "positive and negative controls acceptable") are read and set aside;
* each analyte takes the result word right after it ("OPI neg", "MOR+", "Opiates: not detected") or the
  one before it with "for" or a colon ("positive for fentanyl and oxycodone", "Positive: THC", "+fent");
  "all negative except THC" and "positive for THC only" give every other analyte, and the test's own
  analyte, the opposite result;
* a negation flips the result word it governs when only analytes stand between them ("no opiates
  detected"); a result word next to a word that is not an analyte speaks of that thing ("hydroxyzine
  detected"), and in a challenge note, a result after another test's name speaks of that test ("UDS
  positive");
* safety decides: an opioid-positive analyte or any evidence of withdrawal wins over negative words; a word
  that says the specimen or test cannot be relied on makes the text unreadable; negative only when every
  opioid analyte named is negative; anything else is unreadable.

``tests/data/result_phrases.yaml`` is the corpus of real-world phrasings this is checked against.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Reading = Literal["positive", "negative", "unreadable"]
ChallengeReading = Literal["passed", "failed", "unreadable"]

UNSPECIFIED_OPIOID = "opioids"
"""The analyte class of a screen whose name says no more than that it tests for opioids."""

_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2212", "-"))
_MAX_TEXT = 2000  # longer is a report, not a result: only its start is read
_WORD = re.compile(r"[a-z][a-z0-9/'+-]*")
_COWS = re.compile(r"(?<!\w)cows\b[^;,.\n]*")
_COWS_NUMBER = re.compile(r"(\d+)\s*(min(?:utes?)?|mg|hrs?|hours?|h\b|mcg)?")
_BASELINE = re.compile(r"\b(?:pre|before|baseline|prior)\b")
_MEASURED = (
    r"(?<![\w.])\d+(?:\.\d+)?\s*(?:ng/ml|ug/l|µg/l|μg/l)?\s*[,;(]?\s*(?:cut[- ]?off|threshold)\s*:?\s*"
    r"\d+(?:\.\d+)?"
)
# "OPI/OXY/FEN: neg/neg/pos": analytes and their results in the same order
_POSITIONAL = re.compile(r"(?<![\w/])((?:[\w-]+/)+[\w-]+)\s*[:=]\s*((?:[\w+-]+/)+[\w+-]+)(?![\w/])")


class ResultWordsError(ValueError):
    """``result_words.yaml`` cannot be used; raised at start-up."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int
    analyte: str | None = None


@dataclass(frozen=True, slots=True)
class ScreenText:
    """What a screen's text says: overall, and per analyte class it names."""

    reading: Reading
    analytes: Mapping[str, Reading] = field(default_factory=dict)
    """Deciding analyte classes named (or implied by the test itself) and their reading."""


def normalise(text: str) -> str:
    """NFKC, case-folded, one kind of dash, runs of spaces collapsed; line breaks are kept (they end a
    sentence)."""
    folded = unicodedata.normalize("NFKC", text).translate(_DASHES).casefold()
    return "\n".join(" ".join(line.split()) for line in folded.splitlines() if line.strip())


def _alternation(patterns: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _bounded(patterns: Iterable[str]) -> str:
    # Bounded by non-word characters rather than \b: some patterns start or end with a symbol (">300").
    return rf"(?<!\w)(?:{_alternation(patterns)})(?!\w)"


_SIGNS = [
    ("brk", r"[;|\n]|\.(?=\s|$)"),
    ("comma", r","),
    ("colon", r":"),
    ("prefix_pos", r"(?<![\w+])\+\s?(?=[a-z])"),
    ("pos", r"\(\s*\+\s*\)|(?<![\w+])\+(?![\w+])|(?<=\w)\+(?![\w+])"),
    ("neg", r"\(\s*-\s*\)|(?<=[a-z0-9)\]])\s?-(?=\s*(?:[,;|/)]|$))|(?<=[a-z0-9)\]])-(?=\s)"),
]


class ResultVocabulary:
    """The compiled grammar of ``rules/result_words.yaml``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        try:
            screen, challenge, analytes = data["screen"], data["challenge"], data["analytes"]
            self._classes = tuple(analytes)
            self._opioid = frozenset(name for name, spec in analytes.items() if spec["opioid"])
            self._validity = frozenset(name for name, spec in analytes.items() if spec.get("validity"))
            analyte_groups = [
                (f"a{i}", _bounded(spec["patterns"])) for i, spec in enumerate(analytes.values())
            ]
            self._filler = frozenset(screen["filler"])
            self._absent_before = re.compile(_bounded(screen["absent_before"]))
            self._screen = _compile(
                [
                    ("ignored", _bounded(screen["ignored"])),
                    ("measured", _MEASURED),
                    ("unreadable", _bounded(screen["unreadable"])),
                    ("not_tested", _bounded(screen["not_tested"])),
                    ("neg", _bounded(screen["negative"])),
                    ("pos", _bounded(screen["positive"])),
                    *_SIGNS,
                    ("negation", _bounded(screen["negation"])),
                    ("all", _bounded(screen["all"])),
                    ("except", _bounded(screen["except"])),
                    ("only", _bounded(screen["only"])),
                    ("use_reported", _bounded(screen["use_reported"])),
                    ("for", r"(?<!\w)for(?!\w)"),
                    *analyte_groups,
                ]
            )
            self._challenge = _compile(
                [
                    ("failed", _bounded(challenge["failed_first"])),
                    ("uncertain", _bounded(challenge["uncertain"])),
                    ("uncertain", r":\s*n(?!\w)"),  # "withdrawal: N" (no? normal? not assessed?)
                    ("unreadable", _bounded(challenge["unreadable"])),
                    ("cows", _COWS.pattern),
                    ("postneg", _bounded(challenge["negation_after"][:1])),
                    ("other_test", _bounded(challenge["other_test"])),
                    ("neutral", _bounded(challenge["neutral_before_withdrawal"])),
                    ("contrast", _bounded(challenge["contrast"])),
                    ("withdrawal", _bounded(challenge["withdrawal"])),
                    ("passed", _bounded(challenge["passed"][:2])),
                    ("negation", _bounded(challenge["negation_before"])),
                    ("failed", _bounded(challenge["failed"])),
                    ("passed", _bounded(challenge["passed"][2:])),
                    ("postneg", _bounded(challenge["negation_after"][1:])),
                    *_SIGNS,
                ]
            )
            self._analyte_names = re.compile(_alternation(f"(?P<{g}>{p})" for g, p in analyte_groups))
        except (KeyError, TypeError, AttributeError, re.error) as exc:
            raise ResultWordsError(f"result words: {exc!r}") from exc

    @classmethod
    def load(cls, path: Path) -> ResultVocabulary:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ResultWordsError(f"{path}: {exc!r}") from exc
        return cls(data)

    # ------------------------------------------------------------------------------------- analytes

    def is_opioid(self, analyte: str) -> bool:
        return analyte in self._opioid or analyte == UNSPECIFIED_OPIOID

    def analytes_named(self, texts: Iterable[str]) -> tuple[str, ...]:
        """Analyte classes a test's name mentions ("oxyCODONE+oxyMORphone [Presence]..." -> oxycodone)."""
        found: dict[str, None] = {}
        for text in texts:
            for match in self._analyte_names.finditer(normalise(text)):
                if match.lastgroup is not None:
                    found[self._classes[int(match.lastgroup[1:])]] = None
        return tuple(found)

    def _tokens(self, pattern: re.Pattern[str], text: str) -> list[_Token]:
        tokens = []
        for match in pattern.finditer(text):
            name = (match.lastgroup or "").split("__")[0]
            analyte = self._classes[int(name[1:])] if name[:1] == "a" and name[1:].isdigit() else None
            kind = "analyte" if analyte is not None else name
            if kind == "measured":  # "4520 ng/mL (cutoff 300 ng/mL)": compared
                value, cutoff = (float(n) for n in re.findall(r"\d+(?:\.\d+)?", match.group())[:2])
                kind = "pos" if value >= cutoff else "neg"
            tokens.append(_Token(kind, match.group(), match.start(), match.end(), analyte))
        return tokens

    # -------------------------------------------------------------------------------------- screens

    def read_screen(
        self, text: str, own_analytes: Sequence[str], decides: Callable[[str], bool] | None = None
    ) -> ScreenText:
        """A screen's text, for a test of ``own_analytes`` (the classes its name says). ``decides`` tells
        which analytes decide the result (by default the opioids: THC positive on an opioid screen is not
        an opioid-positive result)."""
        decides = decides or self.is_opioid
        normal = _POSITIONAL.sub(_pair_positions, normalise(text)[:_MAX_TEXT])
        if normal in ("-", "(-)"):
            normal = "negative"
        own = tuple(a for a in own_analytes if decides(a)) or (UNSPECIFIED_OPIOID,)
        results: dict[str, set[str]] = {}
        named: list[str] = []
        unreadable = False
        for start, sentence in _sentences(self._tokens(self._screen, normal)):
            reading = _ScreenSentence(self, normal, start, sentence).read()
            unreadable = unreadable or reading.unreadable
            if not reading.says_a_result:
                continue  # "patient prescribed oxycodone": a mention, not a result
            named += reading.named
            for analyte, polarity in reading.results:
                results.setdefault(analyte, set()).add(polarity)
            for analyte in own:
                for polarity in reading.bare:
                    results.setdefault(analyte, set()).add(polarity)
                if reading.global_polarity is not None:
                    results.setdefault(analyte, set()).add(reading.global_polarity)
            if reading.global_polarity is not None:
                for analyte in reading.named:
                    if analyte not in reading.exceptions:
                        results.setdefault(analyte, set()).add(reading.global_polarity)
        for analyte, polarities in results.items():
            if analyte in self._validity and "pos" in polarities:
                unreadable = True  # an adulterated specimen: its negatives mean nothing
        per_analyte: dict[str, Reading] = {}
        for analyte in dict.fromkeys([*named, *results]):
            if not decides(analyte):
                continue
            polarities = results.get(analyte, set()) - {"untested"}
            if "pos" in polarities:
                per_analyte[analyte] = "positive"
            elif polarities == {"neg"} and not unreadable:
                per_analyte[analyte] = "negative"
            elif polarities or analyte not in {a for a, p in _flat(results) if p == "untested"}:
                per_analyte[analyte] = "unreadable"
        if "positive" in per_analyte.values():
            overall: Reading = "positive"
        elif per_analyte and all(r == "negative" for r in per_analyte.values()):
            overall = "negative"
        else:
            overall = "unreadable"
        return ScreenText(overall, per_analyte)

    def is_filler(self, words: str) -> bool:
        """Whether nothing but filler words ("urine screen was") and numbers stand in ``words``."""
        return all(word in self._filler for word in _WORD.findall(words))

    def states_absent(self, negation: str) -> bool:
        return bool(self._absent_before.fullmatch(negation))

    def is_validity(self, analyte: str) -> bool:
        return analyte in self._validity

    # ---------------------------------------------------------------------------------- challenges

    def read_challenge(self, text: str) -> ChallengeReading:
        """A naloxone challenge note: failed (withdrawal), passed (no withdrawal) or unreadable."""
        normal = normalise(text)[:_MAX_TEXT]
        tokens = [t for t in self._tokens(self._challenge, normal) if t.kind not in ("comma", "colon")]
        failed = passed = unreadable = False
        about_other_test = False
        for index, token in enumerate(tokens):
            if token.kind == "brk":
                about_other_test = False
            elif token.kind == "other_test":
                about_other_test = True  # "UDS positive", "test dose tolerated": not this challenge
            elif token.kind in ("unreadable", "uncertain"):
                unreadable = True
            elif about_other_test:
                continue
            elif token.kind == "cows":
                failed = failed or _cows_after_naloxone(token.text) >= 5
            elif token.kind == "withdrawal":
                finding = _withdrawal_finding(tokens, index)
                failed = failed or finding == "present"
                passed = passed or finding == "absent"
            elif token.kind in ("failed", "passed", "pos", "neg"):
                says_failed = (token.kind in ("failed", "pos")) != (
                    _negated(tokens, index) or _answered_no(tokens, index)
                )
                failed = failed or says_failed
                passed = passed or not says_failed
        if failed:
            return "failed"
        if unreadable or not passed:
            return "unreadable"
        return "passed"


def _compile(groups: Sequence[tuple[str, str]]) -> re.Pattern[str]:
    # Several groups share a kind ("passed" twice): the regex needs unique names.
    named = [f"(?P<{name}__{index}>{pattern})" for index, (name, pattern) in enumerate(groups)]
    return re.compile("|".join(named), re.IGNORECASE)


def _flat(results: Mapping[str, set[str]]) -> Iterable[tuple[str, str]]:
    return ((analyte, p) for analyte, polarities in results.items() for p in polarities)


def _pair_positions(match: re.Match[str]) -> str:
    names, results = match.group(1).split("/"), match.group(2).split("/")
    if len(names) != len(results):
        return match.group()
    return ", ".join(f"{name} {result}" for name, result in zip(names, results, strict=True))


def _sentences(tokens: list[_Token]) -> list[tuple[int, list[_Token]]]:
    """(where the sentence starts in the text, its tokens)."""
    sentences: list[tuple[int, list[_Token]]] = [(0, [])]
    for token in tokens:
        if token.kind == "brk":
            sentences.append((token.end, []))
        else:
            sentences[-1][1].append(token)
    return [(start, tokens) for start, tokens in sentences if tokens]


_OPPOSITE = {"pos": "neg", "neg": "pos"}
_RESULT_KINDS = ("pos", "neg", "not_tested")


@dataclass
class _SentenceReading:
    results: list[tuple[str, str]] = field(default_factory=list)
    """(analyte, pos|neg|untested) pairs stated in the sentence."""
    bare: list[str] = field(default_factory=list)
    """Result words with no analyte: they speak of the test itself."""
    named: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    global_polarity: str | None = None
    unreadable: bool = False
    says_a_result: bool = False


class _ScreenSentence:
    """One sentence of a screen's text, read left to right."""

    def __init__(self, words: ResultVocabulary, text: str, start: int, tokens: list[_Token]) -> None:
        self.words, self.text, self.start = words, text, start
        self.tokens = [t for t in tokens if t.kind != "ignored"]
        self.reading = _SentenceReading()
        self.pending: list[str] = []  # analytes waiting for their result word
        self.prefix: str | None = None  # "positive for ..." gives its result to the analytes after it
        self.negation: _Token | None = None
        self.negated: list[str] = []
        self.in_exception = False
        self.prefix_plus = False
        self.prefix_used = False
        self.use_reported = False

    def read(self) -> _SentenceReading:
        for index, token in enumerate(self.tokens):
            self._take(index, token)
        self._end_negation_scope()
        reading = self.reading
        if self.prefix is not None and not self.prefix_used and reading.global_polarity is None:
            reading.bare.append(self.prefix)  # "NEGATIVE (cutoff: 300)": the colon introduced no analyte
        if reading.global_polarity is not None:
            reading.results += [(a, _OPPOSITE[reading.global_polarity]) for a in reading.exceptions]
        reading.says_a_result = bool(reading.results or reading.bare or reading.global_polarity)
        if self.use_reported and any(self.words.is_opioid(a) for a in reading.named):
            reading.unreadable = True  # "used heroin yesterday": a negative result would contradict it
        return reading

    def _next(self, index: int, step: int = 1) -> _Token | None:
        return self.tokens[index + step] if index + step < len(self.tokens) else None

    def _take(self, index: int, token: _Token) -> None:
        reading = self.reading
        following = self._next(index)
        if token.kind == "unreadable":
            reading.unreadable = True
        elif token.kind == "use_reported":
            self.use_reported = True
        elif token.kind == "comma":
            self._end_negation_scope()  # "no THC, opiates positive": the negation stops at the comma
        elif token.kind == "negation":
            self.negation, self.negated = token, []
        elif token.kind == "prefix_pos":
            self.prefix_plus = True
        elif token.kind == "analyte" and token.analyte is not None:
            self._analyte(index, token.analyte)
        elif token.kind in _RESULT_KINDS:
            self._result(index, token, following)
        elif token.kind == "all" and following is not None and following.kind in ("pos", "neg"):
            reading.global_polarity = self._polarity(following.kind)
        elif token.kind == "except" and reading.global_polarity is not None:
            self.in_exception, self.pending = True, []
        elif token.kind == "only" and self.prefix is not None and reading.results:
            # "positive for THC only": every other analyte, and the test itself, has the opposite result
            reading.exceptions += [a for a, _ in reading.results]
            reading.global_polarity = _OPPOSITE[self.prefix]
        if token.kind not in ("analyte", "negation", "comma"):
            self.negation = None  # a negation reaches its result word across analytes only

    def _polarity(self, kind: str) -> str:
        polarity = _OPPOSITE[kind] if self.negation is not None and kind in _OPPOSITE else kind
        self.negation, self.negated = None, []
        return polarity

    def _analyte(self, index: int, analyte: str) -> None:
        reading = self.reading
        reading.named.append(analyte)
        if self.in_exception:
            reading.exceptions.append(analyte)
        if self.prefix_plus:
            reading.results.append((analyte, "pos"))
            self.prefix_plus = False
        elif self.prefix is not None and not self._has_own_result(index):
            reading.results.append((analyte, self.prefix))
            self.prefix_used = True
        else:
            self.pending.append(analyte)
            if self.negation is not None:
                self.negated.append(analyte)

    def _has_own_result(self, index: int) -> bool:
        """The analyte at ``index`` is followed by its own result word, not by a new "<result> for"."""
        following, after = self._next(index), self._next(index, 2)
        while following is not None and following.kind == "colon":
            index += 1
            following, after = self._next(index), self._next(index, 2)
        return (
            following is not None
            and following.kind in _RESULT_KINDS
            and not (after is not None and after.kind in ("for", "colon", "all"))
        )

    def _result(self, index: int, token: _Token, following: _Token | None) -> None:
        reading = self.reading
        polarity = "untested" if token.kind == "not_tested" else self._polarity(token.kind)
        after = self._next(index, 2)
        if following is not None and following.kind == "for" and after is not None and after.kind == "all":
            reading.global_polarity = polarity  # "negative for all (substances) except ..."
        elif following is not None and following.kind in ("for", "colon") and not self.pending:
            self.prefix, self.prefix_used = polarity, False  # "positive for fentanyl", "Positive: THC"
        elif following is not None and following.kind == "except" and not self.pending:
            reading.global_polarity = polarity  # "negative except FEN"
        elif self.pending:
            reading.results += [(analyte, polarity) for analyte in self.pending]
            self.pending = []
        elif self.in_exception or reading.global_polarity is not None:
            pass  # "all negative except THC pos": the exception's own word
        elif polarity == "untested":
            reading.unreadable = True  # "not done": the test itself says nothing
        elif not self._about_something_else(token):
            reading.bare.append(polarity)

    def _about_something_else(self, token: _Token) -> bool:
        """A result word right after a word that is no analyte ("hydroxyzine detected") speaks of it."""
        previous = [t for t in self.tokens if t.end <= token.start]
        start = previous[-1].end if previous else self.start
        if previous and previous[-1].kind in ("pos", "neg", "unreadable", "not_tested"):
            return False
        return not self.words.is_filler(self.text[start : token.start])

    def _end_negation_scope(self) -> None:
        """A negated analyte with no result word is stated absent ("no fentanyl"), unless the negation
        is about history ("denies fentanyl use")."""
        if self.negation is not None and self.words.states_absent(self.negation.text):
            absent = [a for a in self.negated if a in self.pending]
            self.reading.results += [(a, "neg") for a in absent]
            self.pending = [a for a in self.pending if a not in absent]
        self.negation, self.negated = None, []


# ---------------------------------------------------------------------------------------- challenges


def _cows_after_naloxone(phrase: str) -> int:
    """The highest COWS score in the phrase that is not a baseline ("COWS 3 pre / 9 post" -> 9);
    minutes, doses and hours are not scores."""
    scores = []
    for part in re.split(r"/|,|;|\bthen\b", phrase):
        if _BASELINE.search(part) and not re.search(r"\b(?:post|after)\b", part):
            continue
        scores += [int(n) for n, unit in _COWS_NUMBER.findall(part) if not unit]
    return max(scores, default=0)


_NEGATION_STOPS = frozenset(
    {"brk", "contrast", "failed", "passed", "pos", "neg", "withdrawal", "unreadable", "uncertain"}
)


def _negated(tokens: Sequence[_Token], index: int) -> bool:
    """A negation among the (at most three) tokens before ``index``, in the same sentence; a list of
    withdrawal signs stays under one negation ("no yawning, rhinorrhoea or piloerection")."""
    steps = 0
    for back in range(index - 1, -1, -1):
        kind = tokens[back].kind
        if kind == "negation":
            return True
        if kind == "withdrawal" and tokens[index].kind == "withdrawal":
            continue
        steps += 1
        if steps >= 3 or kind in _NEGATION_STOPS:
            return False
    return False


def _answered_no(tokens: Sequence[_Token], index: int) -> bool:
    """ "Passed: no": a bare "no" right after the word answers it."""
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    after = tokens[index + 2] if index + 2 < len(tokens) else None
    return (
        following is not None
        and following.kind == "negation"
        and following.text == "no"
        and (after is None or after.kind == "brk")
    )


def _governs_a_word(tokens: Sequence[_Token], index: int) -> bool:
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    return following is not None and following.kind in ("failed", "passed", "pos", "neg", "withdrawal")


def _withdrawal_finding(tokens: Sequence[_Token], index: int) -> Literal["present", "absent", "neutral"]:
    """A withdrawal mention: negated before ("no withdrawal") or after ("withdrawal: none") -> absent;
    "monitored for withdrawal" -> neutral, unless a negation follows it ("...; none"); a mention next to
    a word that says it could not be judged ("unable to distinguish anxiety from withdrawal") -> neutral;
    otherwise present."""
    if _negated(tokens, index):
        return "absent"
    watched = index > 0 and tokens[index - 1].kind == "neutral"
    near = tokens[max(0, index - 3) : index + 3]
    if any(t.kind == "uncertain" for t in near):
        return "neutral"
    crossed_break = False
    for offset, ahead in enumerate(tokens[index + 1 : index + 4], start=index + 1):
        if ahead.kind in ("postneg", "passed", "neg"):
            return "absent"
        if ahead.kind == "negation" and not _governs_a_word(tokens, offset):
            return "absent"  # "withdrawal denied", "withdrawal? no"
        if ahead.kind == "brk":
            if crossed_break or not watched:
                break
            crossed_break = True
            continue
        if ahead.kind in ("withdrawal", "failed", "cows", "pos"):
            break
    return "neutral" if watched else "present"
