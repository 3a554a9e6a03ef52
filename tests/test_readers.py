"""Image/DICOM readers and dataset formats, on files each test writes in tmp_path.

Pixel values are checked, not only shapes: a MONOCHROME1 gradient must come back inverted, a VOI
window must map its centre to 0.5, a 16-bit PNG must keep its 16 bits. Every broken file must
raise ImageReadError with one line that names the file.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from minirad.data.datasets import (
    Record,
    hash_split,
    load_image_folder_records,
    load_iu_xray_records,
    load_r2gen_annotation,
)
from minirad.data.readers import ImageReadError, is_dicom, read_dicom_metadata, read_image

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-PID-4711"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage

# ---------------------------------------------------------------------------------------------
# File writers
# ---------------------------------------------------------------------------------------------


def write_dicom(path, stored: np.ndarray | None, **fields) -> None:
    """A CR DICOM with patient identifiers, 12 bits stored in 16; `fields` override the header."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    if stored is not None:
        frames = stored if stored.ndim == 3 else stored[None]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = frames.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        if len(frames) > 1:
            ds.NumberOfFrames = len(frames)
        ds.PixelData = frames.astype("<u2").tobytes()
    for name, value in fields.items():
        setattr(ds, name, value)
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom >= 3
    except TypeError:
        ds.save_as(path, write_like_original=False)  # pydicom 2.x


def gradient(rows: int = 4, cols: int = 64, top: int = 4095) -> np.ndarray:
    """Stored values rising left to right from 0 to `top`, identical in every row."""
    return np.tile(np.linspace(0, top, cols).round().astype(np.uint16), (rows, 1))


def assert_one_line_error(path, match: str | None = None) -> ImageReadError:
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path)
    message = str(info.value)
    assert path.name in message, message
    assert "\n" not in message, message
    return info.value


# ---------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF
# ---------------------------------------------------------------------------------------------


def test_png_8bit_grey(tmp_path):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (16, 16)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)


def test_png_16bit_grey_keeps_16_bits(tmp_path):
    pixels = np.array([[0, 1, 256, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    np.testing.assert_allclose(image, pixels / 65535.0, rtol=1e-6)
    assert image[0, 1] > 0  # 1/65535 survives: no rounding to 8 bits


def test_rgb_jpeg_becomes_grey_with_luma_weights(tmp_path):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 1] = 200  # pure green: L = 0.587 * 200 ~ 117
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    assert image.shape == (16, 16)
    assert abs(float(image.mean()) - 0.587 * 200 / 255) < 0.02


def test_tiff_16bit(tmp_path):
    pixels = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    Image.fromarray(pixels).save(tmp_path / "d.tif")
    np.testing.assert_allclose(read_image(tmp_path / "d.tif"), pixels / 65535.0, rtol=1e-6)


def test_resize(tmp_path):
    Image.fromarray(np.full((40, 30), 128, dtype=np.uint8)).save(tmp_path / "e.png")
    image = read_image(tmp_path / "e.png", size=8)
    assert image.shape == (8, 8) and image.dtype == np.float32
    np.testing.assert_allclose(image, 128 / 255.0, atol=1e-6)


def test_decompression_bomb_limit_is_enforced(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 256 pixels: over the warning limit
    assert_one_line_error(tmp_path / "bomb.png", match="decompression-bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # over twice the limit: Pillow's error
    assert_one_line_error(tmp_path / "bomb.png", match="decompression-bomb")


# ---------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------

WINDOW = dict(RescaleSlope=2, RescaleIntercept=-100, WindowCenter=1900, WindowWidth=400)


def test_dicom_monochrome2_without_window_spans_0_to_1(tmp_path):
    write_dicom(tmp_path / "m2.dcm", gradient())
    image = read_image(tmp_path / "m2.dcm")
    assert image.dtype == np.float32 and image.shape == (4, 64)
    assert image[0, 0] == 0.0 and image[0, -1] == 1.0
    assert np.all(np.diff(image[0]) > 0)


def test_dicom_monochrome1_is_inverted(tmp_path):
    write_dicom(tmp_path / "m2.dcm", gradient())
    write_dicom(tmp_path / "m1.dcm", gradient(), PhotometricInterpretation="MONOCHROME1")
    m1, m2 = read_image(tmp_path / "m1.dcm"), read_image(tmp_path / "m2.dcm")
    assert np.all(np.diff(m1[0]) < 0)  # rising stored values come back darker and darker
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_dicom_rescale_and_window(tmp_path):
    # rescaled = 2 * stored - 100; the window [1700, 2100] holds stored 900..1100, centre 1000.
    stored = np.array([[0, 900, 1000, 1100, 4095]], dtype=np.uint16)
    write_dicom(tmp_path / "w2.dcm", stored, **WINDOW)
    image = read_image(tmp_path / "w2.dcm")
    assert image[0, 0] == 0.0 and image[0, 4] == 1.0  # outside the window: clipped
    assert abs(image[0, 2] - 0.5) < 0.01  # the window's centre is mid-grey
    assert image[0, 1] < 0.01 and image[0, 3] > 0.99  # the window's edges


def test_dicom_monochrome1_window_rescale(tmp_path):
    stored = np.array([[0, 1000, 4095]], dtype=np.uint16)
    write_dicom(tmp_path / "w1.dcm", stored, PhotometricInterpretation="MONOCHROME1", **WINDOW)
    image = read_image(tmp_path / "w1.dcm")
    assert image[0, 0] == 1.0 and image[0, 2] == 0.0
    assert abs(image[0, 1] - 0.5) < 0.01


def test_dicom_voi_lut_table(tmp_path):
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]  # 4 entries, first input value 0, 8-bit output
    lut.LUTData = [0, 50, 200, 255]
    lut["LUTData"].VR = "US"
    stored = np.array([[0, 1, 2, 3, 4000]], dtype=np.uint16)
    write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=[lut])
    image = read_image(tmp_path / "lut.dcm")
    np.testing.assert_allclose(image[0], [0, 50 / 255, 200 / 255, 1, 1], atol=1e-6)


def test_dicom_found_by_preamble_without_extension(tmp_path):
    write_dicom(tmp_path / "IM0001", gradient())
    assert is_dicom(tmp_path / "IM0001")
    assert read_image(tmp_path / "IM0001", size=16).shape == (16, 16)


def test_patient_identifiers_never_returned(tmp_path):
    path = tmp_path / "pii.dcm"
    write_dicom(path, gradient(), **WINDOW)
    assert PATIENT_NAME in str(pydicom.dcmread(path).PatientName)  # the file does hold them
    image = read_image(path)
    assert type(image) is np.ndarray and image.dtype == np.float32  # pixels, no header object
    raw = image.tobytes()
    for secret in (PATIENT_NAME, PATIENT_ID):
        assert secret.encode() not in raw
    metadata = read_dicom_metadata(path)
    assert set(metadata) == {
        "Modality",
        "BodyPartExamined",
        "PhotometricInterpretation",
        "SamplesPerPixel",
        "Rows",
        "Columns",
        "BitsStored",
        "ViewPosition",
    }
    assert metadata["Modality"] == "CR" and metadata["Rows"] == 4 and metadata["BitsStored"] == 12
    for secret in (PATIENT_NAME, PATIENT_ID, "Doe", "4711"):
        assert secret not in repr(metadata)


def test_multiframe_dicom_refused(tmp_path):
    path = tmp_path / "multi.dcm"
    write_dicom(path, np.stack([gradient(), gradient()]))
    error = assert_one_line_error(path, match="multi-frame")
    assert PATIENT_NAME not in str(error) and PATIENT_ID not in str(error)


def test_non_image_dicom_refused(tmp_path):
    path = tmp_path / "report.dcm"
    write_dicom(path, None, Modality="SR")
    assert_one_line_error(path, match="no pixel data")


def test_truncated_dicom_pixel_data_refused(tmp_path):
    path = tmp_path / "short.dcm"
    write_dicom(path, gradient(rows=32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])
    assert_one_line_error(path, match="pixel data")


# ---------------------------------------------------------------------------------------------
# Broken files
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nowhere.png", match="no such file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(tmp_path / "empty.png", match="empty")


def test_truncated_png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert_one_line_error(tmp_path / "cut.png", match="truncated")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\nsecond line\n")
    assert_one_line_error(tmp_path / "notes.png", match="not a PNG")


def test_unknown_format_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "x.gif")
    assert_one_line_error(tmp_path / "x.gif", match="not a PNG")


def test_dcm_that_is_not_dicom(tmp_path):
    (tmp_path / "fake.dcm").write_text("hello\nworld\n" * 20)
    assert_one_line_error(tmp_path / "fake.dcm", match="not a DICOM")


def test_error_is_a_value_error(tmp_path):
    assert issubclass(ImageReadError, ValueError)


# ---------------------------------------------------------------------------------------------
# Dataset formats
# ---------------------------------------------------------------------------------------------


def _png(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(path)


def test_image_folder_records(tmp_path):
    for name in ("pneumonia/b.png", "normal/z.png", "normal/a.jpg", "normal/readme.txt"):
        path = tmp_path / name
        if name.endswith(".txt"):
            path.write_text("x")
        else:
            _png(path)
    records = load_image_folder_records(tmp_path)
    assert [r.id for r in records] == ["normal/a", "normal/z", "pneumonia/b"]
    assert records[0].findings == {"label": "normal"}
    assert records[2].image_paths == [tmp_path / "pneumonia" / "b.png"]
    with pytest.raises(ValueError, match="no images"):
        load_image_folder_records(tmp_path / "pneumonia")


def _annotation(tmp_path, items_by_split) -> object:
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(items_by_split))
    return path


def test_r2gen_annotation(tmp_path):
    _png(tmp_path / "images" / "s1" / "0.png")
    _png(tmp_path / "images" / "s1" / "1.png")
    _png(tmp_path / "images" / "s2" / "0.png")
    items = {
        "train": [
            {
                "id": "s1",
                "report": "No acute disease.",
                "image_path": ["s1/0.png", "s1/1.png"],
                "findings": {"effusion": 0},
            }
        ],
        "val": [],
        "test": [{"id": "s2", "report": "Small effusion.", "image_path": ["s2/0.png"]}],
    }
    path = _annotation(tmp_path, items)
    records = load_r2gen_annotation(path, image_dir=tmp_path / "images")
    assert records[0] == Record(
        "s1",
        [tmp_path / "images/s1/0.png", tmp_path / "images/s1/1.png"],
        "No acute disease.",
        "train",
        {"effusion": 0},
    )
    assert records[1].split == "test" and records[1].findings is None
    # default image_dir: the json's own folder
    items["test"][0]["image_path"] = ["images/s2/0.png"]
    items["train"] = []
    assert load_r2gen_annotation(_annotation(tmp_path, items))[0].id == "s2"


@pytest.mark.parametrize(
    "item, match",
    [
        ({"id": "s9", "image_path": ["s9/0.png"]}, "missing key"),
        ({"id": "s9", "report": "x", "image_path": ["s9/0.png"]}, "not found"),
        ({"id": "s9", "report": "x", "image_path": []}, "non-empty list"),
        ({"id": "s9", "report": "x", "image_path": "s9/0.png"}, "non-empty list"),
    ],
)
def test_r2gen_broken_items(tmp_path, item, match):
    path = _annotation(tmp_path, {"train": [item]})
    with pytest.raises(ValueError, match=match) as info:
        load_r2gen_annotation(path)
    message = str(info.value)
    assert "annotation.json" in message and "train[0]" in message and "\n" not in message


def test_r2gen_broken_files(tmp_path):
    (tmp_path / "annotation.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_r2gen_annotation(tmp_path / "annotation.json")
    with pytest.raises(ValueError, match="no such file"):
        load_r2gen_annotation(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown split"):
        load_r2gen_annotation(_annotation(tmp_path, {"training": []}))


def _iu_files(tmp_path, projections: str) -> tuple:
    reports = tmp_path / "indiana_reports.csv"
    reports.write_text(
        "uid,MeSH,Problems,image,indication,comparison,findings,impression\n"
        '1,normal,normal,Xray,cough,None,"The heart is normal.\n Lungs clear.",No acute disease.\n'
        "2,normal,normal,Xray,pain,None,,Normal chest.\n"
        "3,normal,normal,Xray,pain,None,,\n"
    )
    path = tmp_path / "indiana_projections.csv"
    path.write_text(projections)
    return reports, path


def test_iu_xray_records(tmp_path):
    for name in ("1_lat.png", "1_front.png", "2_front.png", "3_front.png"):
        _png(tmp_path / name)
    reports, projections = _iu_files(
        tmp_path,
        "uid,filename,projection\n"
        "1,1_lat.png,Lateral\n1,1_front.png,Frontal\n2,2_front.png,Frontal\n3,3_front.png,Frontal\n",
    )
    records = load_iu_xray_records(reports, projections)
    assert [r.id for r in records] == ["1", "2"]  # uid 3 has no report text
    assert records[0].image_paths == [tmp_path / "1_front.png", tmp_path / "1_lat.png"]
    assert records[0].report == (
        "FINDINGS: The heart is normal. Lungs clear. IMPRESSION: No acute disease."
    )
    assert records[1].report == "IMPRESSION: Normal chest."
    assert records[0].split == hash_split("1")
    assert [r.split for r in load_iu_xray_records(reports, projections, split="test")] == [
        "test",
        "test",
    ]


def test_iu_xray_broken(tmp_path):
    reports, projections = _iu_files(tmp_path, "uid,filename,projection\n1,gone.png,Frontal\n")
    with pytest.raises(ValueError, match="gone.png") as info:
        load_iu_xray_records(reports, projections)
    assert "indiana_projections.csv" in str(info.value) and "uid 1" in str(info.value)
    projections.write_text("uid,file,projection\n")
    with pytest.raises(ValueError, match="missing column"):
        load_iu_xray_records(reports, projections)


def test_hash_split_is_deterministic_and_roughly_70_10_20():
    splits = [hash_split(str(uid)) for uid in range(3000)]
    assert splits == [hash_split(str(uid)) for uid in range(3000)]
    counts = {name: splits.count(name) / 3000 for name in ("train", "val", "test")}
    assert abs(counts["train"] - 0.7) < 0.04
    assert abs(counts["val"] - 0.1) < 0.03
    assert abs(counts["test"] - 0.2) < 0.03


# ---------------------------------------------------------------------------------------------
# Issue 15: bad headers and files get one line naming the file, never a library's traceback


def test_samples_per_pixel_that_do_not_fit_the_photometric_are_refused(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint16)
    fields = dict(Rows=8, Columns=8, BitsAllocated=16, BitsStored=12, HighBit=11)
    write_dicom(
        tmp_path / "spp3.dcm",
        None,
        SamplesPerPixel=3,
        PhotometricInterpretation="MONOCHROME2",
        PixelRepresentation=0,
        PlanarConfiguration=0,
        PixelData=rgb.tobytes(),
        **fields,
    )
    assert_one_line_error(tmp_path / "spp3.dcm", "SamplesPerPixel 3 does not fit MONOCHROME2")


def test_a_header_number_that_is_not_a_number_is_named(tmp_path):
    path = tmp_path / "frames.dcm"
    write_dicom(path, gradient(), NumberOfFrames="7")
    data = path.read_bytes()
    tag = data.index(b"\x28\x00\x08\x00IS\x02\x00")  # (0028,0008) NumberOfFrames, 2 bytes
    path.write_bytes(data[: tag + 8] + b"ab" + data[tag + 10 :])
    assert_one_line_error(path, "NumberOfFrames 'ab' is not a whole number")


@pytest.mark.parametrize(
    "fields, reason",
    [
        (dict(WindowCenter="nan", WindowWidth=100), "WindowCenter 'nan' is not a finite number"),
        (dict(WindowCenter=100, WindowWidth=0), "WindowWidth '0.0' must be >= 1"),
        (dict(RescaleSlope="nan", RescaleIntercept=0), "RescaleSlope 'nan' is not a finite"),
    ],
)
def test_a_window_or_rescale_that_is_not_finite_is_refused(tmp_path, fields, reason):
    write_dicom(tmp_path / "w.dcm", gradient(), **fields)
    assert_one_line_error(tmp_path / "w.dcm", reason)


def test_a_dicom_with_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    header = dict(SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=16)
    header.update(BitsStored=12, HighBit=11, PixelRepresentation=0)
    write_dicom(
        tmp_path / "huge.dcm", None, Rows=30000, Columns=30000, PixelData=b"\0" * 64, **header
    )

    def never(self):
        raise AssertionError("decoded the pixels of a file that is too large")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(never))
    assert_one_line_error(
        tmp_path / "huge.dcm", r"image too large \(900000000 pixels; decompression-bomb limit"
    )


def test_a_symlink_loop_is_not_called_missing(tmp_path):
    (tmp_path / "loop.png").symlink_to("loop.png")
    assert_one_line_error(tmp_path / "loop.png", "symbolic link loop")
    (tmp_path / "dangling.png").symlink_to("nowhere.png")
    assert_one_line_error(tmp_path / "dangling.png", "broken symbolic link")


def test_a_png_with_a_bad_checksum_is_a_corrupt_png(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "good.png")
    data = bytearray((tmp_path / "good.png").read_bytes())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    (tmp_path / "crc.png").write_bytes(bytes(data))
    assert_one_line_error(tmp_path / "crc.png", "corrupt PNG file")


def test_the_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((48, 32), np.uint8)
    upright[:8, :] = 255  # a bright band at the top
    Image.fromarray(upright).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the stored picture is shown turned 90 degrees clockwise
    Image.fromarray(np.rot90(upright, 1)).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    shown = read_image(tmp_path / "rotated.jpg")
    assert shown.shape == (48, 32)
    assert np.abs(shown - read_image(tmp_path / "upright.png")).mean() < 0.02


def test_a_deeply_nested_annotation_is_refused_in_one_line(tmp_path):
    (tmp_path / "annotation.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not valid JSON .*nested too deeply") as info:
        load_r2gen_annotation(tmp_path / "annotation.json")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("image_path", ["/etc/passwd", "../outside.png", "images/../../x.png"])
def test_an_image_path_outside_the_data_folder_is_refused(tmp_path, image_path):
    _png(tmp_path / "outside.png")
    (tmp_path / "data").mkdir()
    item = {"id": "s1", "report": "x", "image_path": [image_path]}
    path = _annotation(tmp_path / "data", {"train": [item]})
    with pytest.raises(ValueError, match="must be a relative path inside") as info:
        load_r2gen_annotation(path)
    assert "train[0]" in str(info.value) and image_path in str(info.value)
