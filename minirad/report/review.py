"""The review step: read the generated report back and decide whether a person must look at it.

A generated report can go wrong in ways a reader spots at once, and so can a program:

    missing section     a required section (FINDINGS, IMPRESSION) is absent or empty
    unfinished          the decoder hit the length limit before writing <eos>
    repeated sentence   the same sentence twice within one section
    contradiction       one sentence states a finding, another denies it
    inconsistent        two mentions of a finding describe it differently: its size
                        ("22 mm" vs "13 mm"), its severity ("moderate" vs "small") or its side
                        ("left" vs "right"), e.g. FINDINGS and IMPRESSION disagreeing
    disagreement        the labeler reads finding f from the text, but the finding head gives
                        P(f) < 0.5 -- or the head gives P(f) >= 0.5 and the text does not state f
    uncertain           the head's P(f) lies in the uncertain band (default 0.35 .. 0.65)
    sections disagree   IMPRESSION states a finding that FINDINGS does not (absent, or
                        negated: then the contradiction is flagged too), or FINDINGS states
                        one that IMPRESSION does not carry (the training reports' impressions
                        list every positive finding: minirad.data.reports.write_report)
    unfamiliar          the image's familiarity score is above the model's threshold: "the
                        image is unlike the training data" (minirad.report.familiarity); a
                        model that carries no familiarity statistics says so, as a reason

What the review does not check is whether the report is true. It reads the report against
itself, against the finding head, and the image against the training data: consistency and
familiarity. A consistent report on a familiar image can still be wrong.

Non-finite numbers are not reviewed but refused: `check_finite` raises NonFiniteOutputError (a
ValueError: one line, no report) when any output of the model holds NaN or inf, and
review_report refuses probabilities or a score that are not finite numbers.

The labeler (minirad.data.labeler) is the same one that scores clinical F1, so the review and
the metrics read the text the same way. Every report leaves with the verdict "accepted" (no
reason found) or "needs review" and the list of reasons.

The decoder writes cleaned text ("findings no cardiomegaly . impression normal chest ."); a
section starts with the sentence whose first word is its name. `format_report` turns that text
back into what a radiologist would expect to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from minirad.data.findings import DECISION_THRESHOLD, FINDINGS, NEGATIVE, POSITIVE
from minirad.data.labeler import label_clause, label_report, split_clauses

SECTION_NAMES = ("findings", "impression")
ACCEPTED, NEEDS_REVIEW = "accepted", "needs review"
UNFAMILIAR = "the image is unlike the training data"
NO_FAMILIARITY = (
    "the model carries no familiarity statistics: an image unlike its training data "
    "cannot be told apart"
)
# The findings an impression must carry when FINDINGS states them: all of them, as in the
# training reports (minirad.data.reports.write_report lists every positive in IMPRESSION).
IMPRESSION_CARRIES = FINDINGS


class NonFiniteOutputError(ValueError):
    """A model output holds NaN or inf: the report is refused, not written."""


def check_finite(outputs: dict[str, object]) -> None:
    """NonFiniteOutputError naming the first output (name -> array) that is not all finite."""
    for name, values in outputs.items():
        array = np.asarray(values, dtype=np.float64)
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise NonFiniteOutputError(
                f"the model's {name} hold {bad} non-finite value(s) (NaN or inf): report refused"
            )


def sentences_of(cleaned: str) -> list[str]:
    """The sentences of a cleaned report ("a b . c d ." -> ["a b", "c d"])."""
    return [s.strip() for s in cleaned.split(" . ") if s.strip(" .")]


def sections_of(cleaned: str) -> dict[str, list[str]]:
    """{section name: its sentences, the name itself removed}; text before the first named
    section goes under "" (a report without headers is all "")."""
    sections: dict[str, list[str]] = {}
    current = ""
    for sentence in sentences_of(cleaned):
        sentence = sentence.rstrip(" .")
        first, _, rest = sentence.partition(" ")
        if first in SECTION_NAMES:
            current, sentence = first, rest
            sections.setdefault(current, [])
        if sentence:
            sections.setdefault(current, []).append(sentence)
    return sections


def format_report(cleaned: str) -> str:
    """Readable text: "FINDINGS: No cardiomegaly. ...\\n\\nIMPRESSION: ..." from cleaned text."""
    blocks = []
    for name, sentences in sections_of(cleaned).items():
        body = " ".join(s[:1].upper() + s[1:] + "." for s in sentences)
        blocks.append(f"{name.upper()}: {body}" if name else body)
    return "\n\n".join(blocks)


def pretty(name: str) -> str:
    """ "pleural_effusion" -> "pleural effusion"."""
    return name.replace("_", " ")


@dataclass
class Review:
    """verdict: "accepted" or "needs review"; reasons: one line each; stated: what the labeler
    reads from the report, finding -> 1 / 0 / -1 / None (CheXpert's values)."""

    verdict: str
    reasons: list[str] = field(default_factory=list)
    stated: dict[str, int | None] = field(default_factory=dict)
    familiarity: dict[str, float] | None = None  # {"score": d, "threshold": t}

    def familiarity_line(self) -> str:
        """One line for the text and HTML outputs: the score beside its threshold."""
        if self.familiarity is None:
            return "Familiarity: not measured (the model carries no familiarity statistics)"
        score, threshold = self.familiarity["score"], self.familiarity["threshold"]
        verdict = "unlike" if score > threshold else "like"
        return (
            f"Familiarity: score {score:.2f}, threshold {threshold:.2f} "
            f"({verdict} the training data; the review checks consistency and familiarity, "
            "not truth)"
        )

    @property
    def positive(self) -> set[str]:
        """The findings the report states (label 1), as labels_from_reports reads them."""
        return {name for name, label in self.stated.items() if label == POSITIVE}

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "stated": self.stated,
            "familiarity": None if self.familiarity is None else dict(self.familiarity),
            "checks": "consistency and familiarity, not truth",
        }


def review_report(
    cleaned: str,
    probabilities: dict[str, float],
    finished: bool = True,
    required_sections: tuple[str, ...] = SECTION_NAMES,
    uncertain_band: tuple[float, float] = (0.35, 0.65),
    familiarity: tuple[float, float] | None = None,
) -> Review:
    """Check one report against itself, against the finding head's probabilities, and the
    image against the training data.

    cleaned: the decoder's text. probabilities: finding -> P(finding) from the finding head.
    finished: whether the decoder wrote <eos>. required_sections: the sections every report
    must have (the training reports' sections; () for datasets without headers).
    familiarity: (score, threshold) of the image (minirad.report.familiarity); None when the
    model carries no familiarity statistics, which is itself a reason for review.
    """
    unknown = set(probabilities) - set(FINDINGS)
    if unknown:
        raise ValueError(f"probabilities: unknown findings {sorted(unknown)}")
    check_finite({"finding probabilities": list(probabilities.values())})
    if familiarity is not None:
        check_finite({"familiarity score and threshold": familiarity})
    sections = sections_of(cleaned)
    stated = label_report(format_report(cleaned))
    clauses = _labelled_clauses(sections)  # labelled once, read by the two checks below
    reasons = (
        _structure_problems(sections, finished, required_sections)
        + _repeated_sentences(sections)
        + _contradictions(clauses)
        + _inconsistent_descriptions(clauses)
        + _disagreements(stated, probabilities, uncertain_band)
        + _sections_disagree(clauses, sections)
        + _unfamiliar(familiarity)
    )
    scored = None
    if familiarity is not None:
        scored = {"score": float(familiarity[0]), "threshold": float(familiarity[1])}
    return Review(ACCEPTED if not reasons else NEEDS_REVIEW, reasons, stated, scored)


def _structure_problems(sections, finished: bool, required: tuple[str, ...]) -> list[str]:
    problems = []
    if not any(sections.values()):
        problems.append("the report is empty")
    for name in required:
        if name not in sections:
            problems.append(f"missing section: {name.upper()}")
        elif not sections[name]:
            problems.append(f"empty section: {name.upper()}")
    if not finished:
        problems.append("unfinished: the decoder reached the length limit before ending")
    return problems


def _repeated_sentences(sections) -> list[str]:
    """Within one section only: an impression that restates a finding is normal style."""
    problems = []
    for name, sentences in sections.items():
        seen = set()
        for sentence in sentences:
            if sentence in seen:
                where = f" in {name.upper()}" if name else ""
                problems.append(f'repeated sentence{where}: "{sentence}"')
            seen.add(sentence)
    return problems


@dataclass
class _Clause:
    """One clause of the report, the sentence it stands in, and the labeler's reading of it:
    (finding, label) for every mention."""

    section: str
    sentence: str
    text: str
    labels: list[tuple[str, int]]


def _labelled_clauses(sections) -> list[_Clause]:
    return [
        _Clause(section, sentence, clause, label_clause(clause))
        for section, sentences in sections.items()
        for sentence in sentences
        for clause in split_clauses(sentence)
    ]


def _contradictions(clauses: list[_Clause]) -> list[str]:
    """A finding stated positive in one sentence and negative in another (or the same)."""
    positive: dict[str, str] = {}
    negative: dict[str, str] = {}
    for clause in clauses:
        for name, label in clause.labels:
            if label == POSITIVE:
                positive.setdefault(name, clause.sentence)
            if label == NEGATIVE:
                negative.setdefault(name, clause.sentence)
    return [
        f'contradiction about {pretty(name)}: "{positive[name]}" vs "{negative[name]}"'
        for name in FINDINGS
        if name in positive and name in negative
    ]


# What a mention of a finding may say about it, read from the words of its clause. Severity
# words of both scales (effusions: small/moderate/large; heart, edema: mild/moderate/severe) map
# onto one, so that "mildly enlarged" in FINDINGS agrees with "mild cardiomegaly".
_SIZE = re.compile(r"\b(\d+(?:\.\d+)?) ?(mm|cm)\b")
_SEVERITY = {
    "small": "small", "mild": "small", "mildly": "small", "moderate": "moderate",
    "moderately": "moderate", "large": "large", "severe": "large", "severely": "large",
}  # fmt: skip
_SIDES = ("left", "right")


def _descriptions(clause: str) -> dict[str, set[str]]:
    """{"size": {"22 mm"}, "severity": {...}, "side": {...}} as stated in one clause; sizes are
    normalised to millimetres ("3.5 cm" -> "35 mm") so that equal sizes compare equal."""
    sizes = {f"{float(v) * (10 if unit == 'cm' else 1):g} mm" for v, unit in _SIZE.findall(clause)}
    words = clause.split()
    return {
        "size": sizes,
        "severity": {_SEVERITY[w] for w in words if w in _SEVERITY},
        "side": {w for w in words if w in _SIDES},
    }


def _inconsistent_descriptions(clauses: list[_Clause]) -> list[str]:
    """A finding described two ways by its positive mentions anywhere in the report.

    Each clause that states a finding lends it the sizes, severities and sides it names. A
    report about two nodules of different sizes would be flagged too: then a reader decides,
    which is what "needs review" asks for.
    """
    seen: dict[str, dict[str, set[str]]] = {}
    for clause in clauses:
        stated = {name for name, label in clause.labels if label == POSITIVE}
        described = _descriptions(clause.text) if stated else {}
        for name in stated:
            for attribute, values in described.items():
                seen.setdefault(name, {}).setdefault(attribute, set()).update(values)
    problems = []
    for name in FINDINGS:
        for attribute, values in seen.get(name, {}).items():
            if len(values) > 1:
                listed = " vs ".join(sorted(values))
                problems.append(f"inconsistent {attribute} of {pretty(name)}: {listed}")
    return problems


def _disagreements(stated, probabilities, band: tuple[float, float]) -> list[str]:
    problems = []
    low, high = band
    for name in FINDINGS:
        if name not in probabilities:
            continue
        p, says = probabilities[name], stated.get(name) == POSITIVE
        if says and p < DECISION_THRESHOLD:
            problems.append(f"states {pretty(name)}, but the finding head gives P = {p:.2f}")
        elif not says and p >= DECISION_THRESHOLD:
            problems.append(
                f"does not state {pretty(name)}, but the finding head gives P = {p:.2f}"
            )
        elif low <= p <= high:
            problems.append(f"the finding head is unsure about {pretty(name)} (P = {p:.2f})")
    return problems


def _sections_disagree(clauses: list[_Clause], sections) -> list[str]:
    """IMPRESSION against FINDINGS: what one states positive, the other must state too."""
    if not ("findings" in sections and "impression" in sections):
        return []
    positive: dict[str, set[str]] = {"findings": set(), "impression": set()}
    for clause in clauses:
        if clause.section in positive:
            positive[clause.section].update(n for n, label in clause.labels if label == POSITIVE)
    problems = [
        f"IMPRESSION states {pretty(name)}, but FINDINGS does not"
        for name in FINDINGS
        if name in positive["impression"] - positive["findings"]
    ]
    problems += [
        f"FINDINGS states {pretty(name)}, but IMPRESSION does not carry it"
        for name in IMPRESSION_CARRIES
        if name in positive["findings"] - positive["impression"]
    ]
    return problems


def _unfamiliar(familiarity: tuple[float, float] | None) -> list[str]:
    if familiarity is None:
        return [NO_FAMILIARITY]
    score, threshold = familiarity
    return [UNFAMILIAR] if score > threshold else []
