"""The input gate (minirad.data.gate): what is not a frontal chest radiograph is refused.

pydicom's own test files stand in for what a new user tries first (a CT slice, an MR slice, a
whole-body nuclear-medicine image); the other inputs are written here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from minirad.data.gate import InputRefusedError, header_refusals, read_radiograph
from minirad.data.phantom import synthesize
from minirad.data.readers import ImageReadError
from test_readers import write_dicom


@pytest.fixture(scope="module")
def phantom():
    ((image, _),) = synthesize(1, seed=99, size=64)
    return image


def refusal_of(path, force=False) -> InputRefusedError:
    with pytest.raises(InputRefusedError) as info:
        read_radiograph(path, 32, force=force)
    message = str(info.value)
    assert message.startswith(f"{path}: refused: ") and "\n" not in message, message
    return info.value


@pytest.mark.parametrize(
    "name, reason",
    [
        ("CT_small.dcm", "Modality CT: not a radiograph (CR or DX)"),
        ("MR_small.dcm", "Modality MR"),
        ("JPEG2000.dcm", "Modality NM"),  # nuclear medicine, whole body
    ],
)
def test_pydicoms_ct_mr_and_nm_files_are_refused_before_decoding(name, reason):
    error = refusal_of(get_testdata_file(name))
    assert reason in error.refusal and error.overridable


def test_the_body_part_the_view_and_colour_are_read_from_the_header(tmp_path, phantom):
    stored = phantom.astype(np.uint16) * 16
    cases = {
        "head.dcm": (dict(BodyPartExamined="HEAD"), "BodyPartExamined HEAD: not the chest"),
        "lateral.dcm": (dict(ViewPosition="LL"), "ViewPosition LL: not a frontal (PA or AP) view"),
        "ct.dcm": (dict(Modality="CT", BodyPartExamined="HEAD"), "Modality CT"),
    }
    for name, (fields, reason) in cases.items():
        write_dicom(tmp_path / name, stored, **fields)
        assert reason in refusal_of(tmp_path / name).refusal
    assert "; BodyPartExamined HEAD" in refusal_of(tmp_path / "ct.dcm").refusal  # both reasons
    write_dicom(tmp_path / "chest.dcm", stored, BodyPartExamined="CHEST", ViewPosition="AP")
    assert read_radiograph(tmp_path / "chest.dcm", 32).forced == ()
    assert header_refusals({"Modality": "DX", "PhotometricInterpretation": "MONOCHROME1"}) == []
    assert header_refusals({"Modality": "CR", "PhotometricInterpretation": "RGB"}) == [
        "PhotometricInterpretation RGB: not grey"
    ]


def test_force_reports_on_what_the_header_refuses_and_says_what_it_overrode():
    radiograph = read_radiograph(get_testdata_file("CT_small.dcm"), 32, force=True)
    assert radiograph.pixels.shape == (32, 32)
    assert radiograph.forced == ("Modality CT: not a radiograph (CR or DX)",)


def test_pixels_that_carry_no_picture_are_refused_even_when_forced(tmp_path, phantom):
    ramp = np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)
    colour = np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=2)
    pictures = {
        "black.png": (np.zeros((64, 64), np.uint8), "constant or near-constant pixels"),
        "white.png": (np.full((64, 64), 255, np.uint8), "constant or near-constant pixels"),
        "one.png": (np.full((1, 1), 80, np.uint8), "smaller than 32 a side"),
        "ramp.png": (colour, "a colour image (red, green and blue differ"),
    }
    for name, (pixels, reason) in pictures.items():
        Image.fromarray(pixels).save(tmp_path / name)
        for force in (False, True):
            error = refusal_of(tmp_path / name, force=force)
            assert reason in error.refusal and not error.overridable
    grey_as_rgb = np.repeat(phantom[:, :, None], 3, axis=2)  # a grey picture stored as RGB
    Image.fromarray(grey_as_rgb).save(tmp_path / "grey.jpg", quality=90)
    Image.fromarray(phantom).save(tmp_path / "phantom.png")
    for name in ("grey.jpg", "phantom.png"):
        assert read_radiograph(tmp_path / name, 32).pixels.shape == (32, 32)


def test_a_colour_dicom_is_refused_and_not_finite_pixels_never_pass(tmp_path, phantom):
    rgb = np.stack([phantom, phantom[::-1], phantom.T], axis=2).astype(np.uint8)
    write_dicom(
        tmp_path / "rgb.dcm",
        None,
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        PlanarConfiguration=0,
        Rows=64,
        Columns=64,
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
        PixelData=rgb.tobytes(),
    )
    assert "PhotometricInterpretation RGB: not grey" in refusal_of(tmp_path / "rgb.dcm").refusal
    assert "a colour image" in refusal_of(tmp_path / "rgb.dcm", force=True).refusal
    write_dicom(tmp_path / "nan.dcm", phantom.astype(np.uint16), RescaleSlope="nan")
    with pytest.raises(ImageReadError, match="RescaleSlope 'nan' is not a finite number"):
        read_radiograph(tmp_path / "nan.dcm", 32, force=True)
