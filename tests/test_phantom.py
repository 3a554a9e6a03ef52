"""The phantom: deterministic, fast, realistic prevalence, and each finding drawn where it says.

The finding tests render the same seed twice, once without and once with one finding. Anatomy,
findings and noise use separate random generators, so the two images differ only where the
finding is drawn, and we compare regions of the difference. Remember the radiological
convention: the patient's LEFT is on the IMAGE RIGHT.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad.data.findings import FINDINGS, Finding, Study
from minirad.data.phantom import (
    NORMAL_FRACTION,
    PREVALENCE,
    contact_sheet,
    render,
    sample_study,
    synthesize,
)

SIZE = 128
SEEDS = (0, 1, 2)


def _pair(finding: Finding, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(normal image, image with `finding`) from the same seed, as float arrays."""
    normal = render(Study(), np.random.default_rng(seed), SIZE).astype(np.float64)
    sick = render(Study((finding,)), np.random.default_rng(seed), SIZE).astype(np.float64)
    return normal, sick


def _region(image: np.ndarray, x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
    """The pixels of a box given in image coordinates in [-1, 1] (x: columns, y: rows)."""
    n = image.shape[0]
    c0, c1 = (int((v + 1) / 2 * n) for v in x)
    r0, r1 = (int((v + 1) / 2 * n) for v in y)
    return image[r0:r1, c0:c1]


def _halves_change(normal: np.ndarray, sick: np.ndarray) -> tuple[float, float]:
    """Total absolute change in the image-left and the image-right half (midline excluded)."""
    diff = np.abs(sick - normal)
    n = diff.shape[1]
    return float(diff[:, : n // 2 - 6].sum()), float(diff[:, n // 2 + 6 :].sum())


# ----------------------------------------------------------------------------- basics


def test_render_dtype_shape_range():
    for size in (64, 128):
        image = render(sample_study(np.random.default_rng(3)), np.random.default_rng(3), size)
        assert image.dtype == np.uint8 and image.shape == (size, size)
        assert image.min() < 30 and image.max() > 200, "air should be dark and bone bright"


def test_deterministic_per_seed():
    a = synthesize(4, seed=11)
    b = synthesize(4, seed=11)
    for (ia, sa), (ib, sb) in zip(a, b, strict=True):
        assert sa == sb
        assert ia.tobytes() == ib.tobytes()
    c = synthesize(4, seed=12)
    assert any(ia.tobytes() != ic.tobytes() for (ia, _), (ic, _) in zip(a, c, strict=True))


def test_worker_processes_draw_the_same_images():
    # Image i depends on (seed, i) alone, so splitting the work changes nothing.
    alone = synthesize(5, seed=3, size=64, workers=1)
    shared = synthesize(5, seed=3, size=64, workers=2)
    for (ia, sa), (ib, sb) in zip(alone, shared, strict=True):
        assert sa == sb and ia.tobytes() == ib.tobytes()
    with pytest.raises(ValueError, match="workers"):
        synthesize(2, seed=3, workers=0)


def test_one_image_regenerates_alone():
    pairs = synthesize(3, seed=5)
    rng = np.random.default_rng([5, 2])
    study = sample_study(rng)
    assert study == pairs[2][1]
    assert render(study, rng).tobytes() == pairs[2][0].tobytes()


def test_prevalence_of_normal_studies():
    rng = np.random.default_rng(2024)
    studies = [sample_study(rng) for _ in range(500)]
    normal = np.mean([s.is_normal for s in studies])
    assert 0.35 <= NORMAL_FRACTION <= 0.55
    assert abs(normal - NORMAL_FRACTION) < 0.10, (normal, NORMAL_FRACTION)
    counts = {name: np.mean([name in s.present() for s in studies]) for name in FINDINGS}
    for name in FINDINGS:
        assert abs(counts[name] - PREVALENCE[name]) < 0.06, (name, counts[name])


def test_sampled_attributes_follow_the_vocabulary():
    rng = np.random.default_rng(7)
    for _ in range(300):
        for f in sample_study(rng).findings:
            if f.name == "cardiomegaly":
                assert 0.52 <= f.value <= 0.65
            if f.name == "nodule":
                assert 6 <= f.value <= 25 and f.side in ("left", "right") and f.zone
            if f.name == "mass":
                assert 30 <= f.value <= 60 and f.side in ("left", "right") and f.zone
            if f.name in ("pleural_effusion", "pneumothorax", "edema"):
                assert f.side and f.severity
            if f.name == "support_device":
                assert f.detail in ("endotracheal tube", "central line", "nasogastric tube")


# ----------------------------------------------------------------------------- findings


@pytest.mark.parametrize("seed", SEEDS)
def test_left_effusion_whitens_the_image_right_base(seed):
    normal, sick = _pair(Finding("pleural_effusion", side="left", severity="moderate"), seed)
    right_base = _region(sick, (0.4, 0.65), (0.1, 0.4)) - _region(normal, (0.4, 0.65), (0.1, 0.4))
    left_base = _region(sick, (-0.65, -0.4), (0.1, 0.4)) - _region(
        normal, (-0.65, -0.4), (0.1, 0.4)
    )
    assert right_base.mean() > 15, right_base.mean()
    assert abs(left_base.mean()) < 0.5, left_base.mean()


@pytest.mark.parametrize("seed", SEEDS)
def test_larger_effusion_is_larger(seed):
    images = [
        render(
            Study((Finding("pleural_effusion", side="right", severity=s),)),
            np.random.default_rng(seed),
        ).astype(float)
        for s in ("small", "moderate", "large")
    ]
    means = [_region(im, (-0.7, -0.1), (-0.4, 0.4)).mean() for im in images]
    assert means[0] < means[1] < means[2], means


@pytest.mark.parametrize("seed", SEEDS)
def test_cardiomegaly_widens_the_heart(seed):
    normal, sick = _pair(Finding("cardiomegaly", value=0.64), seed)
    band = (-0.2, 0.35)  # rows through the heart
    lung = _region(normal, (0.5, 0.65), band).mean()
    threshold = (lung + _region(normal, (-0.05, 0.05), band).mean()) / 2
    width = []
    for image in (normal, sick):
        bright = _region(image, (-1, 1), band) > threshold
        half = SIZE // 2  # the widest contiguous bright run around the midline, over the rows
        left = half - np.argmin(bright[:, :half][:, ::-1], axis=1)
        right = half + np.argmin(bright[:, half:], axis=1)
        width.append(int((right - left).max()))
    assert width[1] >= width[0] + 8, width


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumothorax_darkens_its_periphery(seed):
    normal, sick = _pair(Finding("pneumothorax", side="right", severity="large"), seed)
    box = ((-0.72, -0.55), (-0.45, -0.05))  # lateral upper lung, patient's right = image left
    assert (_region(sick, *box) - _region(normal, *box)).mean() < -2
    mirror = ((0.55, 0.72), (-0.45, -0.05))
    assert abs((_region(sick, *mirror) - _region(normal, *mirror)).mean()) < 0.5


@pytest.mark.parametrize(
    "finding",
    [
        Finding("nodule", side="left", zone="upper", value=15.0),
        Finding("mass", side="left", zone="middle", value=45.0),
        Finding("consolidation", side="left", zone="lower"),
        Finding("atelectasis", side="left", zone="lower"),
        Finding("pneumothorax", side="left", severity="small"),
        Finding("pleural_effusion", side="left", severity="small"),
    ],
    ids=lambda f: f.name,
)
@pytest.mark.parametrize("seed", SEEDS)
def test_left_findings_change_the_image_right(finding, seed):
    normal, sick = _pair(finding, seed)
    image_left, image_right = _halves_change(normal, sick)
    assert image_right > 200, (finding, image_right)
    assert image_left < 0.05 * image_right, (finding, image_left, image_right)
    mirrored = Finding(finding.name, "right", finding.zone, finding.severity, finding.value)
    image_left, image_right = _halves_change(*_pair(mirrored, seed))
    assert image_left > 200 and image_right < 0.05 * image_left


@pytest.mark.parametrize("seed", SEEDS)
def test_edema_is_bilateral_and_perihilar(seed):
    normal, sick = _pair(Finding("edema", side="bilateral", severity="large"), seed)
    left, right = _halves_change(normal, sick)
    assert left > 1000 and right > 1000 and 0.3 < left / right < 3
    hilar = _region(sick - normal, (-0.35, -0.15), (-0.2, 0.1)).mean()
    peripheral = _region(sick - normal, (-0.72, -0.62), (-0.2, 0.1)).mean()
    assert hilar > 2 * abs(peripheral) and hilar > 5


@pytest.mark.parametrize("device", ["endotracheal tube", "central line", "nasogastric tube"])
def test_support_devices_are_bright_lines(device):
    normal, sick = _pair(Finding("support_device", detail=device), seed=4)
    diff = sick - normal
    assert diff.max() > 40, device
    assert (diff > 20).mean() < 0.03, "a device is a thin line, not an area"


# ----------------------------------------------------------------------------- contact sheet
# (Speed is measured, not tested: DESIGN.md keeps timings out of pass/fail; see the note.)


def test_contact_sheet_is_written(tmp_path):
    pairs = synthesize(5, seed=0)
    path = tmp_path / "sheet.png"
    contact_sheet([p[0] for p in pairs], [str(len(p[1].findings)) for p in pairs], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [path], "the temporary file must be gone"
