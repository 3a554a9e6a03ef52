"""A rule-based report labeler in the manner of CheXpert's: text in, one label per finding out.

    label_report("No pleural effusion or pneumothorax. Possible left basilar atelectasis.")
    # {"pleural_effusion": 0, "pneumothorax": 0, "atelectasis": -1, "cardiomegaly": None, ...}

Clinical metrics of a report generator (precision/recall/F1 of findings) need the findings of a
*generated* report, and a generator writes free text. CheXpert (Irvin et al., 2019) labels such
text in three steps, which this module follows on a small scale:

1. mention extraction: find each phrase that names a finding (regexes with synonyms:
   "blunting of the costophrenic angle" names an effusion);
2. classification of each mention: UNCERTAIN if an uncertainty cue ("possible", "cannot be
   excluded", "likely") governs it, else NEGATIVE if a negation cue ("no", "without", "resolved")
   does, else POSITIVE. Phrases that call a structure normal ("heart size is normal",
   "lungs are clear") are negative mentions of the findings of that structure;
3. aggregation over the mentions of one finding: POSITIVE > UNCERTAIN > NEGATIVE, and None
   when a finding is never mentioned.

A cue governs the mentions of its clause: a negation before a list ("No pleural effusion or
pneumothorax") negates every item of it, up to a word that starts a new clause ("but", "however").
The labeler must read reports written by people, not only by reports.py, so the tests feed it
sentences the grammar never produces.
"""

from __future__ import annotations

import re

from minirad.data.findings import FINDINGS, NEGATIVE, POSITIVE, UNCERTAIN

# 1. Mentions: each finding's synonyms. Word boundaries keep "line" out of "midline".
MENTIONS: dict[str, list[str]] = {
    "cardiomegaly": [
        r"cardiomegaly",
        r"enlarge(?:d|ment of the) (?:heart|cardiac silhouette|cardiac size)",
        r"(?:heart|cardiac silhouette|heart size|cardiac size) (?:is |appears |remains )?"
        r"(?:\w+ )?enlarged",
    ],
    "pleural_effusion": [
        r"(?<!pericardial )effusions?",
        r"blunt(?:ing|ed) of the (?:\w+ )?costophrenic",
        r"costophrenic angles? (?:is |are )?blunt(?:ed|ing)",
        r"(?:pleural )?fluid(?! overload)",
    ],
    "pneumothorax": [r"pneumothora(?:x|ces)", r"\bptx"],
    "nodule": [r"nodules?", r"nodular (?:opacit|densit)(?:y|ies)"],
    "mass": [r"mass(?:es)?"],
    "consolidation": [
        r"consolidat\w*",
        r"air[- ]?space (?:opacit(?:y|ies)|disease|process|consolidation)",
        r"pneumonias?",
        r"infiltrates?",
    ],
    "edema": [
        r"o?edema",
        r"(?:vascular|pulmonary|venous) congestion",
        r"fluid overload",
    ],
    "atelectasis": [r"atelecta\w*", r"volume loss", r"collapsed?"],
    "support_device": [
        r"(?<!pleural )(?<!kerley b )(?<!septal )lines?",
        r"tubes?",
        r"catheters?",
        r"pacemakers?",
        r"pacer",
        r"picc",
        r"(?:aicd|icd|defibrillator)",
        r"devices?",
        r"(?:chest|pigtail) drains?",
    ],
}

# 2a. Phrases that call a structure normal, and the findings they rule out.
NORMAL_PHRASES: list[tuple[str, tuple[str, ...]]] = [
    (
        r"(?:heart|cardiac) size (?:is |remains )?(?:normal|within normal limits|top[- ]normal"
        r"|upper limits of normal|stable)",
        ("cardiomegaly",),
    ),
    (
        r"(?:heart|cardiac silhouette|cardiomediastinal silhouette|heart size) "
        r"(?:is |appears |remains )?(?:normal|top[- ]normal|within normal limits|unremarkable"
        r"|not enlarged)",
        ("cardiomegaly",),
    ),
    (
        r"normal (?:heart size|cardiac silhouette|cardiomediastinal silhouette|size of the heart"
        r"|cardiac size|heart)",
        ("cardiomegaly",),
    ),
    (
        r"(?:lungs? (?:are |is |remains? )?(?:well[- ]expanded and )?clear|clear lungs)"
        r"(?! of)",
        ("consolidation", "edema", "atelectasis"),
    ),
    (
        r"costophrenic angles? (?:is |are )?(?:sharp|clear|preserved)",
        ("pleural_effusion",),
    ),
    (r"pulmonary vascularity (?:is )?(?:normal|within normal limits)", ("edema",)),
]

# 2b. Cues. Uncertainty is tested first: "cannot be excluded" must not read as a negation.
UNCERTAINTY_CUES = re.compile(
    r"\b(?:may|might|possible|possibly|probable|probably|likely|suspect(?:ed)?"
    r"|suggest(?:s|ive of|ing)?|concerning for|cannot be (?:excluded|ruled out)"
    r"|can ?not (?:exclude|rule out)|can't (?:exclude|rule out)|not (?:be )?excluded"
    r"|versus|vs\.?|questionable|question of|equivocal|borderline|differential"
    r"|could (?:be|represent)|rule out|r/o|indeterminate|\?)"
)
PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|negative for|free of|clear of|absence of|resolved|resolution of"
    r"|removal of|rather than|never)\b"
)
POST_NEGATION = re.compile(
    r"\b(?:resolved|removed"  # also "has been resolved", "are removed": a search finds the verb
    r"|(?:is|are) (?:not (?:seen|present|identified|appreciated|visualized|enlarged)|absent)"
    r"|no longer (?:seen|present|visible|identified))\b"
)
# "No change in the effusion" reports an effusion; these phrases are not negations.
NOT_A_NEGATION = re.compile(r"\bno (?:significant |interval )?change\b|\bnot changed\b")
# Words that start a new clause and so end the scope of a cue.
CLAUSE_BREAK = re.compile(
    r"[;:]|,? but\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b|\bother than\b"
    r"|\baside from\b|\bapart from\b|\bwhereas\b|\bwhich\b|,? (?:and )?(?=there (?:is|are)\b)"
)
HEADERS = re.compile(r"\b(?:findings|impression|indication|comparison|history)\s*:", re.I)


def split_sentences(text: str) -> list[str]:
    """Lower-cased sentences: split at a period/!/? followed by space or end, and at newlines.

    A decimal point ("4.5 cm") has no space after it, so it does not split.
    """
    text = HEADERS.sub(" ", text).lower()
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip(" .") for p in parts if p.strip(" .")]


def split_clauses(sentence: str) -> list[str]:
    """The clauses of a sentence: the scope within which a cue governs a mention."""
    return [c.strip(" ,") for c in CLAUSE_BREAK.split(sentence) if c.strip(" ,")]


def _find_mentions(clause: str, taken: bytearray) -> list[tuple[str, int, int]]:
    """(finding, start, end) for each synonym match in `clause` outside the characters `taken`.

    taken[i] is 1 where character i already belongs to a mention (or a normal phrase): a match
    that touches one is a synonym inside a longer mention ("pleural effusion" inside "blunting
    ..."), not a mention of its own. Checking the characters of a match, rather than comparing it
    with every earlier mention, keeps a clause of m mentions linear in m, not quadratic.
    """
    found = []
    for name, patterns in MENTIONS.items():
        for pattern in patterns:
            for m in re.finditer(rf"\b{pattern}\b", clause):
                if not any(taken[m.start() : m.end()]):
                    found.append((name, m.start(), m.end()))
                    taken[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
    return found


class ClauseCues:
    """Where the cues of one clause are, found once: each mention is then classified in O(1).

    uncertain: an uncertainty cue anywhere in the clause. first_negation_end: where the first
    negation cue ends (a mention after it is negated), after blanking "no change" and its kind.
    last_post_negation: where the last "... is not seen" cue starts (a mention before it is
    negated). Searching the clause again for each mention made a long clause quadratic.
    """

    def __init__(self, clause: str) -> None:
        self.uncertain = UNCERTAINTY_CUES.search(clause) is not None
        # Blank "no change" with spaces of the same length, so that positions stay those of
        # the clause.
        blanked = NOT_A_NEGATION.sub(lambda m: " " * len(m.group()), clause)
        first = PRE_NEGATION.search(blanked)
        self.first_negation_end = first.end() if first else len(clause) + 1
        starts = [m.start() for m in POST_NEGATION.finditer(clause)]
        self.last_post_negation = max(starts, default=-1)


def classify_mention(clause: str, start: int, end: int, cues: ClauseCues | None = None) -> int:
    """UNCERTAIN, NEGATIVE or POSITIVE for the mention clause[start:end].

    `cues`: the clause's ClauseCues, when the caller classifies many mentions of one clause.
    """
    cues = cues or ClauseCues(clause)
    if cues.uncertain:
        return UNCERTAIN
    if cues.first_negation_end <= start or cues.last_post_negation >= end:
        return NEGATIVE
    return POSITIVE


# CheXpert's aggregation: the strongest statement about a finding wins.
_PRIORITY = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}


def _aggregate(labels: dict[str, int | None], name: str, label: int) -> None:
    old = labels[name]
    if old is None or _PRIORITY[label] > _PRIORITY[old]:
        labels[name] = label


def label_clause(clause: str) -> list[tuple[str, int]]:
    """(finding, label) for every mention in one clause, normal-structure phrases included."""
    results: list[tuple[str, int]] = []
    taken = bytearray(len(clause))
    cues = ClauseCues(clause)
    for pattern, names in NORMAL_PHRASES:
        for m in re.finditer(rf"\b{pattern}", clause):
            taken[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
            # "Heart size is normal" is itself negative, unless something makes it uncertain.
            label = UNCERTAIN if cues.uncertain else NEGATIVE
            results += [(name, label) for name in names]
    for name, start, end in _find_mentions(clause, taken):
        results.append((name, classify_mention(clause, start, end, cues)))
    return results


def label_report(text: str) -> dict[str, int | None]:
    """Every name of FINDINGS -> POSITIVE (1), NEGATIVE (0), UNCERTAIN (-1) or None."""
    labels: dict[str, int | None] = dict.fromkeys(FINDINGS)
    for sentence in split_sentences(text):
        for clause in split_clauses(sentence):
            for name, label in label_clause(clause):
                _aggregate(labels, name, label)
    return labels
