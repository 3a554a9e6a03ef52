"""A report grammar: write a radiologist's report from a `Study`.

    report = write_report(study, np.random.default_rng(0))
    # FINDINGS: Small left pleural effusion. The heart size is normal. No pneumothorax. ...
    # IMPRESSION: Small left pleural effusion.

Why a grammar and not one template per finding: a report generator trained on one fixed sentence
per finding learns to copy templates, and its BLEU says nothing. Real reports say the same thing in
many ways ("The heart size is normal." / "Normal cardiac silhouette."), negate some absent findings
and leave others unsaid, and put sentences in varying order. The grammar draws all of those choices
from `rng`, so a report is reproducible from (study, seed) and the labeler in labeler.py can be
tested on it.

Rules the grammar keeps, so that the text never contradicts the study:
- a positive finding is always stated, plainly (never with "may", "possible", "likely");
- a structure is called normal ("The lungs are clear.") only when no finding of it is present;
- an absent finding is either negated explicitly or not mentioned, never stated.
"""

from __future__ import annotations

import numpy as np

from minirad.data.findings import Finding, Study

# Findings of the lung parenchyma: while any is present the lungs are not "clear".
LUNG_FINDINGS = ("nodule", "mass", "consolidation", "edema", "atelectasis")


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One of `options`, drawn by `rng` (an index, so the result is a plain str, not np.str_)."""
    return options[int(rng.integers(len(options)))]


def _sentence(text: str) -> str:
    """Capitalise the first letter and end with a period."""
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# ----------------------------------------------------------------------------------------------
# Location, size and severity words
# ----------------------------------------------------------------------------------------------

_LOBES = {
    ("right", "upper"): "right upper lobe",
    ("right", "middle"): "right middle lobe",
    ("right", "lower"): "right lower lobe",
    ("left", "upper"): "left upper lobe",
    ("left", "middle"): "lingula",  # the left lung has no middle lobe; the lingula sits there
    ("left", "lower"): "left lower lobe",
}
_ZONE_WORDS = {"upper": "upper zone", "middle": "mid zone", "lower": "lower zone"}
_BILATERAL = {
    "upper": ("both upper lobes", "both upper zones", "both apices"),
    "middle": ("both mid zones", "both mid lungs"),
    "lower": ("both lower lobes", "both lung bases", "both lower zones"),
}


def location(side: str | None, zone: str | None, rng: np.random.Generator) -> str:
    """A place in the chest as a noun phrase: "right upper lobe", "left lung base", "lingula".

    Radiologists name lobes when they are sure of the anatomy and zones when they describe what a
    frontal film shows; both appear, so both are drawn. Empty when neither side nor zone is known.
    """
    if side is None and zone is None:
        return ""
    if side == "bilateral":
        return _pick(rng, _BILATERAL[zone]) if zone else "both lungs"
    if zone is None:
        return f"{side} lung"
    if side is None:
        return _pick(rng, (f"{_ZONE_WORDS[zone]}s", f"{zone} lungs"))
    options = [_LOBES[(side, zone)], f"{side} {_ZONE_WORDS[zone]}"]
    if zone == "lower":
        options.append(f"{side} lung base")
    if zone == "upper":
        options.append(f"{side} apex")
    return _pick(rng, options)


def _in(place: str) -> str:
    """ "in the right upper lobe", "at the left lung base" (bases and apices take "at")."""
    if not place:
        return ""
    prefix = "at" if place.endswith(("base", "bases", "apex", "apices")) else "in"
    article = "" if place.startswith("both") else "the "
    return f" {prefix} {article}{place}"


def _size(value: float | None) -> str:
    """A diameter as radiologists write it: "12 mm" below 3 cm, "4.5 cm" from 3 cm on."""
    if value is None:
        return ""
    return f"{value:.0f} mm" if value < 30 else f"{value / 10:.1f} cm"


_MILDNESS = {"small": "mild", "moderate": "moderate", "large": "severe"}


# ----------------------------------------------------------------------------------------------
# One sentence per positive finding; one phrase for the impression
# ----------------------------------------------------------------------------------------------


def _cardiomegaly(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    degree = f"{_MILDNESS[f.severity]} " if f.severity else ""
    adverb = f"{_MILDNESS[f.severity]}ly " if f.severity else ""  # "mildly", "severely"
    ratio = f" (cardiothoracic ratio {f.value:.2f})" if f.value is not None else ""
    sentence = _pick(
        rng,
        (
            f"The heart is {adverb}enlarged{ratio}",
            f"{degree}cardiomegaly{ratio}",
            f"The cardiac silhouette is {adverb}enlarged{ratio}",
            f"There is {degree}enlargement of the cardiac silhouette{ratio}",
        ),
    )
    return sentence, f"{degree}cardiomegaly"


def _pleural(f: Finding, rng: np.random.Generator, noun: str, plural: str) -> tuple[str, str]:
    """Effusion and pneumothorax share a shape: severity, side, the noun."""
    size = f"{f.severity} " if f.severity else ""
    if f.side == "bilateral":
        phrase = f"{size}bilateral {plural}"
    else:
        phrase = f"{size}{f.side + ' ' if f.side else ''}{noun}"
    sentence = _pick(rng, (phrase, f"There is a {phrase}", f"A {phrase} is present"))
    if f.side == "bilateral" and sentence.startswith(("There is a", "A ")):
        sentence = _pick(rng, (phrase, f"There are {phrase}"))
    return sentence, phrase


def _effusion(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    sentence, phrase = _pleural(f, rng, "pleural effusion", "pleural effusions")
    if f.side in ("left", "right") and rng.random() < 0.25:
        # The sign itself, as it is often written on a frontal film.
        sentence = f"{sentence}, with blunting of the {f.side} costophrenic angle"
    return sentence, phrase


def _pneumothorax(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    return _pleural(f, rng, "pneumothorax", "pneumothoraces")


def _focal(f: Finding, rng: np.random.Generator, nouns: tuple[str, ...]) -> tuple[str, str]:
    """Nodule and mass: a measured, located lesion."""
    noun = _pick(rng, nouns)
    size = _size(f.value) or (f"{f.severity}" if f.severity else "")
    place = location(f.side, f.zone, rng)
    sized = f"{size} {noun}".strip()
    sentence = _pick(
        rng,
        (
            f"There is a {sized}{_in(place)}",
            f"A {sized} is seen{_in(place)}",
            f"{noun}{_in(place)} measuring {size}" if size else f"{noun}{_in(place)}",
        ),
    )
    return sentence, f"{sized}{_in(place)}"


def _nodule(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    sentence, phrase = _focal(f, rng, ("nodule", "pulmonary nodule", "nodular opacity"))
    return sentence, phrase + _pick(rng, ("", "; CT recommended for further characterization"))


def _mass(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    return _focal(f, rng, ("mass", "pulmonary mass", "soft tissue mass"))


def _consolidation(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    place = _in(location(f.side, f.zone, rng))
    noun = _pick(rng, ("consolidation", "airspace opacity", "airspace consolidation"))
    adjective = _pick(rng, ("", "focal ", "patchy ")) if f.side != "bilateral" else "patchy "
    sentence = _pick(
        rng,
        (
            f"There is {adjective}{noun}{place}",
            f"{adjective}{noun}{place}, compatible with pneumonia",
            f"{adjective}{noun} is seen{place}",
        ),
    )
    return sentence, f"{adjective}{noun}{place}"


def _edema(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    degree = f"{_MILDNESS[f.severity]} " if f.severity else ""
    sentence = _pick(
        rng,
        (
            f"There is {degree}pulmonary edema",
            f"{degree}interstitial edema with pulmonary vascular congestion",
            f"Findings are consistent with {degree}pulmonary edema",
        ),
    )
    return sentence, f"{degree}pulmonary edema"


def _atelectasis(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    place = _in(location(f.side, f.zone, rng))
    kind = _pick(rng, ("", "subsegmental ", "plate-like ", "linear "))
    sentence = _pick(
        rng,
        (
            f"{kind}atelectasis{place}",
            f"There is {kind}atelectasis{place}",
            f"{kind}atelectatic changes{place}",
        ),
    )
    return sentence, f"{kind}atelectasis{place}"


# Support devices: how each is described, with where its tip or leads lie.
_DEVICES = {
    "endotracheal tube": (
        "Endotracheal tube in place with tip above the carina",
        "The endotracheal tube terminates 4 cm above the carina",
        "ET tube in standard position",
    ),
    "central line": (
        "Subclavian central venous catheter with tip in the SVC",
        "A central line is in place with its tip in the superior vena cava",
        "Subclavian central line terminates in the SVC",
    ),
    "nasogastric tube": (
        "Nasogastric tube courses below the diaphragm",
        "An enteric tube is seen with tip in the stomach",
    ),
    "pacemaker": (
        "Left-sided pacemaker with leads in the right atrium and right ventricle",
        "A dual-chamber pacemaker is in place",
    ),
    "chest tube": (
        "A right chest tube is in place",
        "Left-sided chest tube with tip at the apex",
    ),
}


def _support_device(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    detail = f.detail or "support device"
    options = _DEVICES.get(detail, (f"{detail} in place", f"There is a {detail}"))
    return _pick(rng, options), f"{detail} in place"


_WRITERS = {
    "cardiomegaly": _cardiomegaly,
    "pleural_effusion": _effusion,
    "pneumothorax": _pneumothorax,
    "nodule": _nodule,
    "mass": _mass,
    "consolidation": _consolidation,
    "edema": _edema,
    "atelectasis": _atelectasis,
    "support_device": _support_device,
}


# ----------------------------------------------------------------------------------------------
# Normal structures and negations
# ----------------------------------------------------------------------------------------------

_NORMAL_HEART = (
    "The heart size is normal",
    "Normal cardiac silhouette",
    "Heart size is within normal limits",
    "The cardiomediastinal silhouette is within normal limits",
    "No cardiomegaly",
)
_NORMAL_MEDIASTINUM = (
    "The mediastinal contours are normal",
    "Normal mediastinal contours",
    "The hilar and mediastinal contours are unremarkable",
)
_CLEAR_LUNGS = (
    "The lungs are clear",
    "Lungs are clear bilaterally",
    "The lungs are well expanded and clear",
    "Clear lungs",
)
_NORMAL_BONES = (
    "No acute osseous abnormality",
    "The osseous structures are intact",
    "Visualized bones are unremarkable",
)
# One negation per absent finding (cardiomegaly and the pleura are handled as structures).
_NEGATIONS = {
    "pleural_effusion": ("No pleural effusion", "No pleural effusions are seen"),
    "pneumothorax": ("No pneumothorax", "There is no pneumothorax"),
    "nodule": ("No suspicious pulmonary nodules", "No pulmonary nodule is identified"),
    "mass": ("No pulmonary mass", "No mass lesion is seen"),
    "consolidation": ("No focal consolidation", "No airspace consolidation"),
    "edema": ("No pulmonary edema", "No evidence of pulmonary edema"),
    "atelectasis": ("No atelectasis",),
}
_NO_PLEURAL = (
    "No pleural effusion or pneumothorax",
    "There is no pleural effusion or pneumothorax",
    "No pneumothorax or pleural effusion",
    "No evidence of pleural effusion or pneumothorax",
)
_NORMAL_IMPRESSION = (
    "No acute cardiopulmonary abnormality",
    "No acute cardiopulmonary process",
    "Normal chest radiograph",
    "No acute intrathoracic abnormality",
)


def _normal_sentences(present: set[str], rng: np.random.Generator) -> list[str]:
    """Sentences about what is normal or absent, consistent with the findings `present`."""
    sentences = []
    if "cardiomegaly" not in present:
        sentences.append(_pick(rng, _NORMAL_HEART))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, _NORMAL_MEDIASTINUM))
    negated = set()
    if not present & set(LUNG_FINDINGS):
        sentences.append(_pick(rng, _CLEAR_LUNGS))
    if not present & {"pleural_effusion", "pneumothorax"}:
        sentences.append(_pick(rng, _NO_PLEURAL))
        negated |= {"pleural_effusion", "pneumothorax"}
    # Each remaining absent finding: negated half the time, otherwise left unsaid.
    for name, options in _NEGATIONS.items():
        if name not in present and name not in negated and rng.random() < 0.4:
            sentences.append(_pick(rng, options))
    if rng.random() < 0.4:
        sentences.append(_pick(rng, _NORMAL_BONES))
    return sentences


def write_report(study: Study, rng: np.random.Generator) -> str:
    """The report for `study`: "FINDINGS: ... IMPRESSION: ...", every choice drawn from `rng`.

    FINDINGS states each positive finding and the normal structures, in an order that is either
    the classic checklist (devices, lungs, pleura, heart, bones) or shuffled. IMPRESSION lists the
    positives, or says there is nothing acute.
    """
    positives, summaries = [], []
    for finding in study.findings:
        sentence, summary = _WRITERS[finding.name](finding, rng)
        positives.append(_sentence(sentence))
        summaries.append(summary)
    normals = [_sentence(s) for s in _normal_sentences(study.present(), rng)]

    sentences = positives + normals
    if rng.random() < 0.5:  # shuffled order; otherwise positives first, as many readers write
        sentences = [sentences[i] for i in rng.permutation(len(sentences))]

    if summaries:
        impression = [_sentence(s) for s in summaries]
        if rng.random() < 0.3:
            impression.append("Otherwise no acute cardiopulmonary abnormality.")
    else:
        impression = [_sentence(_pick(rng, _NORMAL_IMPRESSION))]
    return f"FINDINGS: {' '.join(sentences)}\n\nIMPRESSION: {' '.join(impression)}"
