"""A procedural phantom of frontal (PA) chest radiographs with known findings.

minirad trains on images whose ground truth is known exactly: `sample_study` draws what an image
shows (a `Study`, the vocabulary of `minirad.data.findings`) and `render` draws the image.

    rng = np.random.default_rng(0)
    study = sample_study(rng)              # e.g. Study((Finding("pleural_effusion", "left", ...),))
    image = render(study, rng, size=128)   # uint8 (128, 128), bright = dense (bone, fluid)
    pairs = synthesize(2000, seed=0)       # [(image, study), ...], image i regenerable alone

Orientation follows the radiological convention: the image is seen as if facing the patient, so
the patient's LEFT is on the IMAGE RIGHT. A "left" pleural effusion whitens the lower right of
the image, and the heart bulges to the image right.

How an image is drawn. Everything happens in "patient coordinates" (x, y) in about [-1, 1]:
x grows to the image right (the patient's left), y grows downward, the thorax is about 1.4 units
wide (MM_PER_UNIT converts millimetres). We build a density map (0 = air, 1 = soft tissue,
more = bone or metal) layer by layer, one function per structure or finding, at SCALE times the
output resolution; then map density to brightness with a random exposure, average SCALE x SCALE
blocks down to the output size (that anti-aliases thin ribs and lines) and add noise.
Random numbers come from three generators derived from the caller's: one for the anatomy, one
for the findings and one for the noise, so that adding a finding to a study changes nothing else
in the image (the tests rely on it).
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numba
import numpy as np

from minirad.data.findings import FINDINGS, Finding, Study
from minirad.files import write_atomically

SCALE = 2  # internal resolution = SCALE x output size, averaged down at the end
MM_PER_UNIT = 250.0  # the thorax (~1.4 units between the outer rib margins) is ~350 mm wide

# Probability that a study shows each finding, drawn independently. A real chest-X-ray archive
# is about half normal; with these numbers P(normal) = prod(1 - p) = NORMAL_FRACTION ~ 0.455.
PREVALENCE: dict[str, float] = {
    "cardiomegaly": 0.12,
    "pleural_effusion": 0.12,
    "pneumothorax": 0.05,
    "nodule": 0.08,
    "mass": 0.03,
    "consolidation": 0.10,
    "edema": 0.07,
    "atelectasis": 0.10,
    "support_device": 0.08,
}
assert tuple(PREVALENCE) == FINDINGS
NORMAL_FRACTION: float = float(np.prod([1.0 - p for p in PREVALENCE.values()]))

DEVICES = ("endotracheal tube", "central line", "nasogastric tube")
_SEVERITY_WEIGHTS = (0.5, 0.35, 0.15)  # small findings are the most common


# ----------------------------------------------------------------------------- sampling studies


def _draw_finding(name: str, rng: np.random.Generator) -> list[Finding]:
    """The attributes of one present finding (a list: a study may carry two devices)."""
    side = str(rng.choice(["left", "right"]))
    severity = str(rng.choice(["small", "moderate", "large"], p=_SEVERITY_WEIGHTS))
    zone = str(rng.choice(["upper", "middle", "lower"]))
    if name == "cardiomegaly":
        return [Finding(name, value=round(float(rng.uniform(0.52, 0.65)), 2))]
    if name == "pleural_effusion":
        side = str(rng.choice(["left", "right", "bilateral"], p=[0.3, 0.35, 0.35]))
        return [Finding(name, side=side, severity=severity)]
    if name == "pneumothorax":
        return [Finding(name, side=side, severity=severity)]
    if name == "nodule":
        return [Finding(name, side=side, zone=zone, value=round(float(rng.uniform(6, 25)), 0))]
    if name == "mass":
        return [Finding(name, side=side, zone=zone, value=round(float(rng.uniform(30, 60)), 0))]
    if name == "consolidation":
        return [Finding(name, side=side, zone=zone)]
    if name == "edema":
        return [Finding(name, side="bilateral", severity=severity)]
    if name == "atelectasis":  # mostly basal: the lower lobes collapse first
        zone = str(rng.choice(["lower", "middle"], p=[0.8, 0.2]))
        return [Finding(name, side=side, zone=zone)]
    if name == "support_device":
        count = 2 if rng.random() < 0.25 else 1
        kinds = rng.choice(len(DEVICES), size=count, replace=False)
        return [Finding(name, detail=DEVICES[k]) for k in sorted(kinds)]
    raise ValueError(f"name: {name!r} is not one of {FINDINGS}")


def sample_study(rng: np.random.Generator) -> Study:
    """Draw the findings of one study; each finding independently with PREVALENCE[name].

    Several findings per image are possible; none (a normal study) with P = NORMAL_FRACTION.
    """
    present = rng.random(len(FINDINGS)) < np.array([PREVALENCE[n] for n in FINDINGS])
    findings: list[Finding] = []
    for name, is_present in zip(FINDINGS, present, strict=True):
        if is_present:
            findings.extend(_draw_finding(name, rng))
    return Study(tuple(findings))


# ----------------------------------------------------------------------------- small tools


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of an n x n image in [-1, 1] (x = column, y = row)."""
    t = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0).astype(np.float32)
    return np.broadcast_to(t[None, :], (n, n)), np.broadcast_to(t[:, None], (n, n))


def _ramp(t: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 as t goes from -width/2 to +width/2: a soft, anti-aliased edge of `t > 0`."""
    return np.clip(0.5 + t * (1.0 / width), 0.0, 1.0)


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 box, by cumulative sums along each axis (cost independent of r)."""
    if r <= 0:
        return img
    k = 2 * r + 1
    c = np.cumsum(np.pad(img, ((r + 1, r), (0, 0)), mode="edge"), axis=0, dtype=np.float32)
    out = (c[k:] - c[:-k]) * (1.0 / k)  # window sums along rows, then along columns
    c = np.cumsum(np.pad(out, ((0, 0), (r + 1, r)), mode="edge"), axis=1, dtype=np.float32)
    return (c[:, k:] - c[:, :-k]) * (1.0 / k)


def _smooth_noise(rng: np.random.Generator, n: int, cell: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with blobs about `cell` pixels across."""
    coarse = rng.standard_normal((n // cell + 2, n // cell + 2)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:n, :n]
    fine = _box_blur(_box_blur(fine, cell // 2), cell // 2)
    return fine / (fine.std() + 1e-6)


@numba.njit(cache=True)
def _draw_segments(canvas, x0, y0, x1, y1, width, value):  # pragma: no cover (compiled)
    """canvas = max(canvas, value * coverage) for each thick segment (pixel units).

    coverage is 1 inside the segment's half-width and falls to 0 over one pixel: anti-aliased.
    """
    h, w = canvas.shape
    for k in range(x0.shape[0]):
        half = 0.5 * width[k]
        dx, dy = x1[k] - x0[k], y1[k] - y0[k]
        length2 = dx * dx + dy * dy + 1e-12
        c0 = max(int(min(x0[k], x1[k]) - half - 1), 0)
        c1 = min(int(max(x0[k], x1[k]) + half + 2), w)
        r0 = max(int(min(y0[k], y1[k]) - half - 1), 0)
        r1 = min(int(max(y0[k], y1[k]) + half + 2), h)
        for r in range(r0, r1):
            for c in range(c0, c1):
                t = ((c - x0[k]) * dx + (r - y0[k]) * dy) / length2
                t = min(max(t, 0.0), 1.0)
                ex, ey = c - x0[k] - t * dx, r - y0[k] - t * dy
                cover = min(max(half - np.sqrt(ex * ex + ey * ey) + 0.5, 0.0), 1.0)
                if value[k] * cover > canvas[r, c]:
                    canvas[r, c] = value[k] * cover


# ----------------------------------------------------------------------------- the anatomy


@dataclass
class Anatomy:
    """One patient's geometry and positioning (patient coordinates, see the module docstring)."""

    n: int  # internal resolution
    rotation: float  # radians; patients are never perfectly straight
    shift: tuple[float, float]
    zoom: float
    lung_cx: float  # |x| of each lung's centre
    lung_cy: float
    lung_a: float  # half-width of a lung
    lung_b: float  # half-height of a lung
    dome_right: float  # y of the top of the right hemidiaphragm (higher = smaller y)
    dome_left: float
    ctr: float  # cardiothoracic ratio
    heart_tilt: float
    heart_b: float
    heart_y: float  # centre of the heart, just above the diaphragm
    carina_y: float
    rib_phase: float

    @property
    def thorax_width(self) -> float:
        return 2.0 * (self.lung_cx + self.lung_a)

    def dome(self, side: float) -> float:
        """Top of the hemidiaphragm of the lung on image side `side` (-1 left, +1 right)."""
        return self.dome_right if side < 0 else self.dome_left


def _draw_anatomy(rng: np.random.Generator, n: int) -> Anatomy:
    dome_right = rng.uniform(0.28, 0.38)
    return Anatomy(
        n=n,
        rotation=float(np.deg2rad(np.clip(rng.normal(0.0, 1.5), -4, 4))),
        shift=(float(rng.normal(0, 0.02)), float(rng.normal(0, 0.02))),
        zoom=float(rng.uniform(0.94, 1.04)),
        lung_cx=float(rng.uniform(0.35, 0.39)),
        lung_cy=float(rng.uniform(0.08, 0.14)),
        lung_a=float(rng.uniform(0.27, 0.31)),
        lung_b=float(rng.uniform(0.80, 0.88)),
        dome_right=float(dome_right),
        dome_left=float(dome_right + rng.uniform(0.03, 0.07)),  # the liver lifts the right dome
        ctr=float(rng.uniform(0.39, 0.48)),
        heart_tilt=float(np.deg2rad(rng.uniform(15, 25))),
        heart_b=float(rng.uniform(0.21, 0.25)),
        heart_y=float(dome_right + rng.uniform(-0.21, -0.17)),
        carina_y=float(rng.uniform(-0.30, -0.22)),
        rib_phase=float(rng.uniform(-0.02, 0.02)),
    )


def _patient_grid(an: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates of every pixel: the image grid rotated, shifted and zoomed."""
    gx, gy = _grid(an.n)
    c, s = float(np.cos(an.rotation)) / an.zoom, float(np.sin(an.rotation)) / an.zoom
    qx, qy = gx - an.shift[0], gy - an.shift[1]  # float32: Python floats keep the dtype
    return c * qx + s * qy, c * qy - s * qx


def _to_pixels(an: Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates -> pixel (column, row) of the internal image; inverse of the grid."""
    c, s = np.cos(an.rotation), np.sin(an.rotation)
    px, py = an.zoom * np.asarray(x), an.zoom * np.asarray(y)
    qx, qy = c * px - s * py + an.shift[0], s * px + c * py + an.shift[1]
    return (qx + 1.0) * an.n / 2 - 0.5, (qy + 1.0) * an.n / 2 - 0.5


def _polyline(an: Anatomy, canvas: np.ndarray, points: list, width: float, value: float) -> None:
    """Draw a thick polyline given in patient coordinates onto `canvas` (max-composited)."""
    p = np.asarray(points, dtype=np.float64)
    cx, cy = _to_pixels(an, p[:, 0], p[:, 1])
    k = len(p) - 1
    w = np.full(k, width * an.n / 2 * an.zoom)
    _draw_segments(canvas, cx[:-1], cy[:-1], cx[1:], cy[1:], w, np.full(k, value))


def _body(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft tissue: a box-like torso with sloping shoulders and the neck above it."""
    shoulders = 0.93 - 0.25 * np.sqrt(np.maximum(-0.55 - y, 0.0))  # narrower toward the neck
    u, v = (x / shoulders) ** 2, ((y - 0.3) / 1.12) ** 2
    torso = 1.0 - u * u - v * v
    neck = 0.2 - np.abs(x)
    thickness = 0.85 + 0.15 * (1.0 - x * x)  # the chest is thicker in the middle
    return np.maximum(_ramp(torso, 0.08), _ramp(neck, 0.04) * (y < -0.5)) * thickness


def _lung_shape(an: Anatomy, x: np.ndarray, y: np.ndarray, side: float) -> np.ndarray:
    """Implicit function of one lung (< 1 inside): a boxy ellipse, flattest laterally."""
    u = np.abs(x - side * an.lung_cx) / an.lung_a
    v = np.abs(y - an.lung_cy) / an.lung_b
    return u * u * np.sqrt(u) + v * v  # |u|^2.5 + |v|^2


def _dome_y(an: Anatomy, x: np.ndarray, side: float) -> np.ndarray:
    """The hemidiaphragm: a dome whose top is a little medial to the lung's centre."""
    t = (x - side * (an.lung_cx - 0.05)) / an.lung_a
    return an.dome(side) + 0.22 * t * t


def _lung(an: Anatomy, x: np.ndarray, y: np.ndarray, side: float) -> np.ndarray:
    """Soft mask of one lung: inside its shape and above its diaphragm (sharp CP angle)."""
    inside = _ramp(1.0 - _lung_shape(an, x, y, side), 0.06)
    return inside * _ramp(_dome_y(an, x, side) - y, 0.012)


def _vessel_tree(an: Anatomy, rng: np.random.Generator, side: float) -> tuple[np.ndarray, ...]:
    """Branching pulmonary vessels from the hilum: thick and bright centrally, thin peripherally.

    Grown level by level: each segment ends where its two children start, which turn by
    +-(12..35) degrees and are shorter, thinner and fainter. Returns segment arrays in pixels.
    """
    roots = 7
    phi = np.deg2rad(np.linspace(-80, 75, roots) + rng.normal(0, 8, roots))
    x = np.full(roots, side * 0.15) + rng.normal(0, 0.01, roots)
    y = np.full(roots, an.carina_y + 0.17) + rng.normal(0, 0.02, roots)
    length = rng.uniform(0.10, 0.16, roots)
    width, value = np.full(roots, 0.016), np.ones(roots)
    segments = []
    for _ in range(5):
        x1, y1 = x + side * length * np.cos(phi), y + length * np.sin(phi)
        segments.append((x, y, x1, y1, width, value))
        turn = np.deg2rad(rng.uniform(12, 35, (2, len(x)))) * np.array([[1.0], [-1.0]])
        phi = (phi + turn).ravel()
        x, y = np.tile(x1, 2), np.tile(y1, 2)
        length = np.tile(length, 2) * rng.uniform(0.65, 0.85, len(phi))
        width, value = np.tile(width, 2) * 0.72, np.tile(value, 2) * 0.82
    x0, y0, x1, y1, w, v = (np.concatenate(parts) for parts in zip(*segments, strict=True))
    c0, r0 = _to_pixels(an, x0, y0)
    c1, r1 = _to_pixels(an, x1, y1)
    return c0, r0, c1, r1, w * an.n / 2 * an.zoom, v


def _vessels(an: Anatomy, rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((an.n, an.n), np.float32)
    for side in (-1.0, 1.0):
        _draw_segments(canvas, *_vessel_tree(an, rng, side))
    return _box_blur(_box_blur(canvas, 1), 1)  # vessels are blurred by motion and overlap


def _heart(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The cardiac silhouette: a tilted ellipse whose widest extent is ctr x thorax width.

    About a third of the heart lies right of the midline (image left), two thirds to the left.
    For an ellipse with semi-axes (a, b) turned by t, the horizontal half-extent is
    sqrt(a^2 cos^2 t + b^2 sin^2 t); we solve that for a so the width is exactly right.
    """
    half = 0.5 * an.ctr * an.thorax_width
    b, t = an.heart_b, an.heart_tilt
    cos_t, sin_t = float(np.cos(t)), float(np.sin(t))
    a = max(half**2 - (b * sin_t) ** 2, 1e-4) ** 0.5 / cos_t
    hx, hy = 0.3 * half, an.heart_y
    dx, dy = x - hx, y - hy
    u = (cos_t * dx + sin_t * dy) / a
    v = (cos_t * dy - sin_t * dx) / b
    return _ramp(1.0 - u * u - v * v, 0.1)


def _mediastinum(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Great vessels above the heart, and the aortic knob bulging to the patient's left."""
    band = _ramp(0.10 + 0.02 * (y > -0.35) - np.abs(x - 0.01), 0.03) * (y > -0.9)
    knob = _ramp(0.05**2 - (x - 0.11) ** 2 - (y - an.carina_y + 0.13) ** 2, 0.002)
    return np.maximum(band, knob)


def _airways(an: Anatomy) -> np.ndarray:
    """The trachea and both main bronchi, as a mask of air inside the mediastinum."""
    canvas = np.zeros((an.n, an.n), np.float32)
    cy = an.carina_y
    _polyline(an, canvas, [(0.0, -1.0), (0.0, cy)], 0.05, 1.0)
    _polyline(an, canvas, [(0.0, cy), (-0.12, cy + 0.12)], 0.03, 0.8)
    _polyline(an, canvas, [(0.0, cy), (0.14, cy + 0.16)], 0.028, 0.8)
    return _box_blur(canvas, 1)


def _spine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The vertebral column down the midline, with brighter endplates every vertebra."""
    column = _ramp(0.075 - np.abs(x), 0.02)
    c2 = np.cos((2 * np.pi / 0.105) * y) ** 2
    endplates = 0.75 + 0.25 * (c2 * c2) ** 2  # cos^8: narrow bright lines
    return column * endplates


def _ribs(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Posterior ribs: curved bands leaving the spine, rising, then falling along the chest wall.

    All ribs share one curve, y = y0 + g(|x|), so one periodic band in w = y - g(|x|) draws
    them all at once; the spacing widens downward as in a real chest.
    """
    xl = np.abs(x)
    g = -0.16 * xl + 1.5 * np.maximum(xl - 0.3, 0.0) ** 2
    w = y - g + an.rib_phase + 0.86
    w = np.maximum(w, 0.0)
    w = w * (1.3 - 0.1 * w)  # lower ribs lie further apart
    phase = (w / 0.16) % 1.0
    band = _ramp(0.2 - np.abs(phase - 0.5), 0.08)  # one rib is ~40% of a rib period
    cortex = _ramp(0.04 - np.abs(np.abs(phase - 0.5) - 0.17), 0.05)  # the brighter rim
    extent = _ramp(xl - 0.07, 0.03) * _ramp(0.80 - xl, 0.05) * (w > 0.03) * (w < 1.45)
    return (0.6 * band + 0.5 * cortex) * extent


def _anterior_ribs(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Anterior ribs: fainter bands falling from the chest wall toward the sternum."""
    xl = np.abs(x)
    w = y - 0.45 * np.maximum(0.8 - xl, 0.0) ** 1.5 + an.rib_phase + 0.5
    phase = (np.maximum(w, 0.0) / 0.2) % 1.0
    band = _ramp(0.15 - np.abs(phase - 0.5), 0.1)
    return band * _ramp(xl - 0.2, 0.1) * _ramp(0.78 - xl, 0.05) * (w > 0.02) * (w < 0.95)


def _clavicles(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Both clavicles: thick bands from the manubrium laterally and slightly upward."""
    xl = np.abs(x)
    centre = -0.66 - 0.10 * (xl - 0.06) + 0.25 * (xl - 0.3) ** 2 + an.rib_phase
    band = _ramp(0.032 - np.abs(y - centre), 0.02)
    return band * _ramp(xl - 0.05, 0.03) * _ramp(0.62 - xl, 0.05)


def _gastric_bubble(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gas in the stomach under the left hemidiaphragm (image right)."""
    u, v = (x - 0.32) / 0.09, (y - an.dome_left - 0.1) / 0.05
    return _ramp(1.0 - u * u - v * v, 0.3)


# ----------------------------------------------------------------------------- the findings


def _sides(finding: Finding) -> tuple[float, ...]:
    """Image side(s) of a finding: the patient's left is the image right (+1)."""
    return {"left": (1.0,), "right": (-1.0,), "bilateral": (-1.0, 1.0)}[finding.side or "left"]


def _zone_y(an: Anatomy, side: float, zone: str) -> float:
    """The height of the centre of an upper, middle or lower lung zone."""
    apex = an.lung_cy - an.lung_b
    fraction = {"upper": 0.22, "middle": 0.5, "lower": 0.77}[zone]
    return apex + fraction * (an.dome(side) - apex)


def _effusion(an: Anatomy, x, y, finding: Finding) -> np.ndarray:
    """Fluid in the pleural space: dense lower hemithorax with a meniscus rising laterally.

    The fluid fills the costophrenic angle first (blunting it) and climbs the lateral chest
    wall, so its upper edge is higher laterally than medially.
    """
    height = {"small": 0.1, "moderate": 0.24, "large": 0.45}[finding.severity or "small"]
    out = np.zeros_like(x)
    for side in _sides(finding):
        lateral = np.clip((side * (x - side * an.lung_cx) + an.lung_a) / (2 * an.lung_a), 0, 1)
        top = an.dome(side) + 0.22 - height - 0.3 * lateral**2
        hemithorax = _ramp(1.06 - _lung_shape(an, x, y, side), 0.06)
        out = np.maximum(out, _ramp(y - top, 0.05) * hemithorax * 0.95)
    return out


def _pneumothorax(an: Anatomy, x, y, finding: Finding) -> tuple[np.ndarray, np.ndarray]:
    """Air between lung and chest wall: (gap mask, pleural line) on one side.

    The collapsed lung is the lung's shape shrunk toward the hilum; between its edge (the
    visceral pleural line, thin and white) and the chest wall there are no lung markings.
    """
    k = {"small": 0.9, "moderate": 0.8, "large": 0.65}[finding.severity or "small"]
    side = _sides(finding)[0]
    cx, cy = side * an.lung_cx * 0.85, an.lung_cy + 0.1
    u, v = np.abs(x - cx) / (k * an.lung_a), (y - cy) / (k * an.lung_b)
    f = u * u * np.sqrt(u) + v * v  # the lung's shape function, shrunk by k
    lung = _lung(an, x, y, side)
    gap = _ramp(f - 1.0, 0.04) * lung
    line = _ramp(0.03 - np.abs(f - 1.0), 0.03) * lung
    return gap, line


def _round_opacity(an: Anatomy, x, y, rng, finding: Finding, lobulated: bool) -> np.ndarray:
    """A nodule (or a lobulated mass) of the stated diameter in mm, with a soft edge."""
    side = _sides(finding)[0]
    cx = side * (an.lung_cx + float(rng.uniform(-0.35, 0.45)) * an.lung_a)
    cy = _zone_y(an, side, finding.zone or "middle") + float(rng.uniform(-0.05, 0.05))
    r = 0.5 * (finding.value or 10.0) / MM_PER_UNIT
    dx, dy = x - cx, y - cy
    dist = np.sqrt(dx * dx + dy * dy)
    if lobulated:
        theta = np.arctan2(dy, dx)  # float32 like dx
        p1, p2 = (float(p) for p in rng.uniform(0, 2 * np.pi, 2))
        r = r * (1 + 0.1 * np.cos(3 * theta + p1) + 0.06 * np.cos(5 * theta + p2))
    return _ramp(r - dist, 0.3 * r + 0.01) * 0.85


def _consolidation(an: Anatomy, x, y, rng, finding: Finding) -> np.ndarray:
    """Air spaces filled with fluid: fluffy, patchy opacity confined to one lung zone."""
    side = _sides(finding)[0]
    cx = side * (an.lung_cx + float(rng.uniform(-0.1, 0.2)) * an.lung_a)
    cy = _zone_y(an, side, finding.zone or "lower")
    envelope = np.exp(-(((x - cx) / (0.7 * an.lung_a)) ** 2) - ((y - cy) / 0.16) ** 2)
    patches = np.clip(0.55 + 0.45 * _smooth_noise(rng, an.n, 10), 0, 1)
    return np.clip(1.3 * envelope * patches, 0, 0.9) * _lung(an, x, y, side)


def _edema(an: Anatomy, x, y, rng, finding: Finding) -> np.ndarray:
    """Pulmonary oedema: a hazy opacity around both hila that fades outward (bat wings)."""
    strength = {"small": 0.35, "moderate": 0.5, "large": 0.65}[finding.severity or "small"]
    haze = np.zeros_like(x)
    for side in (-1.0, 1.0):
        u, v = (x - side * 0.2) / 0.24, (y - an.carina_y - 0.25) / 0.32
        haze = np.maximum(haze, np.exp(-u * u - v * v) * _lung(an, x, y, side))
    texture = np.clip(0.75 + 0.25 * _smooth_noise(rng, an.n, 6), 0, 1)
    return strength * haze * texture


def _atelectasis(an: Anatomy, x, y, rng, finding: Finding) -> np.ndarray:
    """A plate-like band of collapsed lung running obliquely across a lower zone."""
    side = _sides(finding)[0]
    cy = _zone_y(an, side, finding.zone or "lower")
    canvas = np.zeros((an.n, an.n), np.float32)
    x0, x1 = side * (an.lung_cx - 0.6 * an.lung_a), side * (an.lung_cx + 0.7 * an.lung_a)
    tilt = rng.uniform(-0.02, 0.06)
    _polyline(an, canvas, [(x0, cy - tilt), (x1, cy + tilt)], rng.uniform(0.03, 0.05), 0.8)
    return _box_blur(canvas, 2) * _lung(an, x, y, side)


def _devices(an: Anatomy, finding: Finding, canvas: np.ndarray, rng) -> None:
    """Radio-opaque lines: tubes and catheters, drawn as thin very bright polylines."""
    cy, width = an.carina_y, 0.011
    if finding.detail == "endotracheal tube":  # tip 3-7 cm above the carina
        tip = cy - rng.uniform(0.12, 0.25)
        _polyline(an, canvas, [(0.0, -1.1), (0.0, tip)], width, 1.0)
    elif finding.detail == "central line":  # subclavian vein -> superior vena cava
        s = float(rng.choice([-1.0, 1.0]))
        points = [(s * 0.62, -0.62), (s * 0.3, -0.6), (s * 0.12, -0.52), (-0.05, -0.44)]
        _polyline(an, canvas, [*points, (-0.06, cy + rng.uniform(0.0, 0.1))], width, 1.0)
    elif finding.detail == "nasogastric tube":  # down the oesophagus into the stomach
        d = an.dome_left
        points = [(0.0, -1.1), (0.02, cy), (0.04, d + 0.05), (0.22, d + 0.14), (0.3, d + 0.1)]
        _polyline(an, canvas, points, width, 1.0)


# ----------------------------------------------------------------------------- composition


def _adjust_anatomy(an: Anatomy, study: Study) -> None:
    """Findings that change the anatomy itself: a big heart, volume loss that lifts a dome."""
    for f in study.findings:
        if f.name == "cardiomegaly":
            an.ctr = float(f.value or 0.58)
        if f.name == "atelectasis" and f.zone == "lower":
            if _sides(f)[0] < 0:
                an.dome_right -= 0.04
            else:
                an.dome_left -= 0.04


def _density(
    study: Study, an: Anatomy, anat_rng, find_rng
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The density map: 0 air, ~1 soft tissue, more for bone; layer by layer. Also each
    finding's own layer, by its index in study.findings (where the finding is: see
    lesion_masks), for every finding drawn as an opacity or an air gap."""
    x, y = _patient_grid(an)
    lungs = np.maximum(_lung(an, x, y, -1.0), _lung(an, x, y, 1.0))
    vessels = _vessels(an, anat_rng)
    opacity = np.zeros_like(x)  # fluid or tissue where air should be (0..1)
    pneumo_gap, pleural_line = np.zeros_like(x), np.zeros_like(x)
    devices = np.zeros((an.n, an.n), np.float32)
    layers: dict[int, np.ndarray] = {}
    for index, f in enumerate(study.findings):
        layer = None
        if f.name == "pleural_effusion":
            layer = _effusion(an, x, y, f)
        elif f.name == "pneumothorax":
            pneumo_gap, pleural_line = _pneumothorax(an, x, y, f)
            layers[index] = pneumo_gap  # the air gap, not an opacity
        elif f.name in ("nodule", "mass"):
            layer = _round_opacity(an, x, y, find_rng, f, lobulated=f.name == "mass")
        elif f.name == "consolidation":
            layer = _consolidation(an, x, y, find_rng, f)
        elif f.name == "edema":
            layer = _edema(an, x, y, find_rng, f)
        elif f.name == "atelectasis":
            layer = _atelectasis(an, x, y, find_rng, f)
        elif f.name == "support_device":
            _devices(an, f, devices, find_rng)
        if layer is not None:
            opacity = np.maximum(opacity, layer)
            layers[index] = layer

    d = _body(x, y)
    # Lungs are darkest in the middle; soft tissue of the chest wall overlaps their bases.
    air = lungs * (0.72 + 0.08 * pneumo_gap - 0.1 * np.clip(y - 0.1, 0, None))
    d = d - air * (1.0 - opacity)
    d = d + 0.45 * vessels * lungs * (1.0 - pneumo_gap) * (1.0 - opacity)
    d = d + 0.35 * pleural_line
    # Heart and mediastinum are solid: they fill whatever lies in front of and behind them.
    solid = np.maximum(_heart(an, x, y), _mediastinum(an, x, y))
    d = d + solid * (1.05 - d)
    d = d - 0.35 * _airways(an) - 0.45 * _gastric_bubble(an, x, y)
    # Bone adds to whatever lies along the ray; behind the dense heart ribs barely show.
    ribs = 0.16 * _ribs(an, x, y) + 0.06 * _anterior_ribs(an, x, y)
    d = d + 0.2 * _spine(x, y) + ribs * (1.0 - 0.6 * solid) + 0.4 * _clavicles(an, x, y)
    d = _box_blur(d, 1)  # the focal spot and the detector blur everything a little
    return d + 1.2 * devices, layers


def render(study: Study, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A frontal (PA) chest radiograph showing `study`: uint8 array (size, size), bright = dense.

    The patient's LEFT is on the IMAGE RIGHT (radiological convention). The same rng state
    gives a byte-identical image. Drawn at SCALE x size and area-averaged down.
    """
    return render_with_masks(study, rng, size)[0]


# A pixel belongs to a finding where that finding's own layer (its opacity, or a pneumothorax's
# air gap) reaches this fraction of the layer's peak: the soft edges of the drawing are left out.
MASK_FRACTION = 0.3


def render_with_masks(
    study: Study, rng: np.random.Generator, size: int = 128
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(render's image, {finding index: bool mask (size, size) of where it is drawn}).

    The same drawing as render (the image is byte-identical for the same rng state), keeping
    each finding's layer: effusion, pneumothorax (the air gap), nodule, mass, consolidation,
    edema, atelectasis. Cardiomegaly and support devices have no mask (they change the anatomy
    or are lines, not lesions). Used for the pointing game (minirad.report.pointing).
    """
    anat_seed, find_seed, noise_seed = rng.integers(0, 2**63, size=3)
    anat_rng = np.random.default_rng(anat_seed)
    find_rng = np.random.default_rng(find_seed)
    noise_rng = np.random.default_rng(noise_seed)

    an = _draw_anatomy(anat_rng, size * SCALE)
    _adjust_anatomy(an, study)
    d, layers = _density(study, an, anat_rng, find_rng)
    masks = {}
    for index, layer in layers.items():
        small = layer.reshape(size, SCALE, size, SCALE).mean(axis=(1, 3))
        peak = float(small.max())
        masks[index] = small >= MASK_FRACTION * peak if peak > 0 else np.zeros_like(small, bool)

    # Exposure: the window of densities shown, and a gamma for the film/detector response.
    lo, hi = float(noise_rng.uniform(-0.05, 0.08)), float(noise_rng.uniform(1.3, 1.6))
    gamma = float(noise_rng.uniform(0.8, 1.2))
    image = np.clip((d - lo) / (hi - lo), 0.0, 1.0) ** gamma
    image = image.reshape(size, SCALE, size, SCALE).mean(axis=(1, 3))
    sigma = float(noise_rng.uniform(0.008, 0.02))
    image = image + sigma * noise_rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), masks


# Below this many images one process draws them all: starting the worker processes (about half
# a second each, mostly importing NumPy and Numba) would cost more than it saves.
PARALLEL_FROM = 400


def synthesize(
    n: int, seed: int, size: int = 128, workers: int | None = None
) -> list[tuple[np.ndarray, Study]]:
    """n (image, study) pairs; pair i uses np.random.default_rng([seed, i]) alone.

    So any image can be regenerated by itself: `one_phantom(seed, i, size)`. The same property
    lets `workers` processes draw disjoint images at once, with a result that does not depend on
    their number (default: one per CPU core, up to 8, once n >= PARALLEL_FROM). 6000 images of
    128 pixels took 92 s in one process on the 2-core CI-class machine and 48 s in two.
    """
    from tqdm import tqdm

    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= PARALLEL_FROM else 1
    if workers < 1:
        raise ValueError(f"workers: need at least one process, got {workers}")
    bar = tqdm(total=n, desc="phantom", unit="img", disable=None)
    with bar:
        if workers == 1:
            pairs = []
            for i in range(n):
                pairs.append(one_phantom(seed, i, size))
                bar.update()
            return pairs
        # "spawn": fresh interpreters. Forking a process that already runs threads (BLAS,
        # Numba, tqdm's monitor) can copy a lock held by a thread that does not exist in the
        # child, and hang it.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            drawn = pool.map(one_phantom, repeat(seed), range(n), repeat(size), chunksize=50)
            pairs = []
            for pair in drawn:  # in index order, whichever process drew it
                pairs.append(pair)
                bar.update()
    return pairs


def one_phantom(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, Study]:
    """Phantom number `index` of `synthesize(n, seed, size)`: (uint8 image, study)."""
    rng = np.random.default_rng([seed, index])
    study = sample_study(rng)
    return render(study, rng, size), study


def lesion_masks(seed: int, index: int, size: int = 128) -> tuple[Study, dict[int, np.ndarray]]:
    """Where each finding of phantom `index` of `synthesize(n, seed, size)` is drawn: (its
    study, {finding index: bool mask (size, size)}), from the same generators as the image."""
    rng = np.random.default_rng([seed, index])
    study = sample_study(rng)
    return study, render_with_masks(study, rng, size)[1]


def caption(study: Study) -> str:
    """A short caption: the findings with their main attributes, or "normal"."""
    if study.is_normal:
        return "normal"
    parts = []
    for f in study.findings:
        words = [f.side or "", f.zone or "", f.severity or "", f.detail or f.name]
        if f.value is not None:
            words.append(f"{f.value:g}" + ("" if f.name == "cardiomegaly" else "mm"))
        parts.append(" ".join(w for w in words if w))
    return "\n".join(parts)


def contact_sheet(images, captions, path, columns: int = 4) -> None:
    """Save up to 16 images in a grid with a caption under each, written atomically."""
    # A Figure of its own, not pyplot: no global backend switch (which would stop a notebook's
    # inline figures) and nothing left open in pyplot's list of figures.
    from matplotlib.figure import Figure

    images, captions = list(images)[:16], list(captions)[:16]
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(3 * columns, 3.5 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, text in zip(axes.ravel(), images, captions, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(text, fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=100)
    write_atomically(path, buffer.getvalue())
