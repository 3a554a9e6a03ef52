"""The findings a phantom can show and a report can state: one vocabulary for every part.

The phantom renders a `Study` (a tuple of `Finding`s), the report grammar writes text from it,
the labeler reads findings back out of text, and the metrics compare the two. All of them use
the names below, so a finding means the same thing everywhere.

    Finding("pleural_effusion", side="left", severity="small")
    Finding("nodule", side="right", zone="upper", value=12.0)       # diameter in mm
    Finding("cardiomegaly", value=0.58)                              # cardiothoracic ratio
    Finding("support_device", detail="endotracheal tube")
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The order is the order of every label vector (the model's finding head included).
FINDINGS: tuple[str, ...] = (
    "cardiomegaly",
    "pleural_effusion",
    "pneumothorax",
    "nodule",
    "mass",
    "consolidation",
    "edema",
    "atelectasis",
    "support_device",
)

# A finding head "finds" f when its P(f) >= DECISION_THRESHOLD: the report model's decoder reads
# these decisions, and the review step flags a report that disagrees with them.
DECISION_THRESHOLD = 0.5

SIDES = ("left", "right", "bilateral")
ZONES = ("upper", "middle", "lower")
SEVERITIES = ("small", "moderate", "large")

# CheXpert's label values for one finding in one report.
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1  # and None: not mentioned


@dataclass(frozen=True)
class Finding:
    """One abnormality. Fields that do not apply to a finding stay None.

    name: one of FINDINGS.  side: "left" | "right" | "bilateral" (the patient's side).
    zone: "upper" | "middle" | "lower" lung zone.  severity: "small" | "moderate" | "large".
    value: a measurement (cardiothoracic ratio for cardiomegaly, diameter in mm for a nodule or
    mass).  detail: free text for a kind (the device: "endotracheal tube", "central line").
    """

    name: str
    side: str | None = None
    zone: str | None = None
    severity: str | None = None
    value: float | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.name not in FINDINGS:
            raise ValueError(f"name: {self.name!r} is not one of {FINDINGS}")
        for attribute, allowed in (("side", SIDES), ("zone", ZONES), ("severity", SEVERITIES)):
            value = getattr(self, attribute)
            if value is not None and value not in allowed:
                raise ValueError(f"{attribute}: {value!r} is not one of {allowed}")

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @staticmethod
    def from_dict(data: dict) -> Finding:
        return Finding(**data)


@dataclass(frozen=True)
class Study:
    """What one radiograph shows: its findings (empty for a normal study)."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def is_normal(self) -> bool:
        return not self.findings

    def present(self) -> set[str]:
        """The names of the findings present."""
        return {f.name for f in self.findings}

    def label_vector(self) -> list[int]:
        """1 for each name of FINDINGS present, else 0, in FINDINGS order."""
        present = self.present()
        return [int(name in present) for name in FINDINGS]

    def to_list(self) -> list[dict]:
        return [f.to_dict() for f in self.findings]
