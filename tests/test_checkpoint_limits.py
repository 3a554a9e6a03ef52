"""A checkpoint is a file from elsewhere: its size, its entries and its config are bounded.

minirad.nn.checkpoint reads the zip directory and each .npy header before any array; the
config check (minirad.models.config_check) reads the model's description before any weight.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from minirad.data.vocab import Vocabulary
from minirad.models.config_check import check_model_config, parameter_count
from minirad.models.report_model import ReportModel, ReportModelConfig
from minirad.nn import checkpoint


def npz_with(path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def refusal(path) -> str:
    with pytest.raises(ValueError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable .npz checkpoint (") and "\n" not in message
    return message


def test_a_zip_bomb_is_refused_from_the_directory_before_any_entry_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_UNCOMPRESSED_BYTES", 1 << 20, raising=False)
    bomb = tmp_path / "bomb.npz"
    npz_with(bomb, {"w.npy": npy_bytes(np.zeros(1 << 19, np.float32))})  # 2 MiB, deflated
    assert bomb.stat().st_size < 10_000

    def never(*args, **kwargs):
        raise AssertionError("an entry was read")

    monkeypatch.setattr(zipfile.ZipFile, "open", never)
    assert "2.0 MiB" not in refusal(bomb)
    assert "more than the 0.0 GiB a checkpoint may (a zip bomb?)" in refusal(bomb)


def test_an_npy_header_that_declares_more_than_its_entry_holds_is_refused(tmp_path):
    # An empty array's header, rewritten to declare 40 TB: numpy would allocate them all.
    lie = npy_bytes(np.zeros(0, np.float32)).replace(b"(0,)", b"(9999999999999,)")
    npz_with(tmp_path / "lie.npz", {"w.npy": lie + b"\0" * 8}, zipfile.ZIP_STORED)
    message = refusal(tmp_path / "lie.npz")
    assert "entry 'w': its header declares shape (9999999999999,)" in message, message


def test_a_text_file_as_a_checkpoint_gets_no_advice_to_unpickle(tmp_path):
    notes = tmp_path / "notes.npz"
    notes.write_text("these are my notes, not a checkpoint\n")
    message = refusal(notes)
    assert "pickle" not in message and "not a zip archive" in message
    np.save(tmp_path / "bare.npy", np.arange(3))
    assert "a single .npy array" in refusal(tmp_path / "bare.npy")


# ---------------------------------------------------------------------------------------------
# The model's description


def good_config(**changes) -> dict:
    vocab = Vocabulary.build(["no acute disease . heart size is normal ."], min_count=1)
    config = ReportModelConfig(vocab_size=len(vocab), image_size=32).to_dict()
    return {**config, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        dict(cell="gru", channels=[4, 8], convs_per_block=[2, 1], image_size=16),
        dict(channels=[3, 5, 7], convs_per_block=[1, 3, 2], hidden_size=17, attention_dim=9),
    ],
)
def test_the_parameter_count_is_that_of_the_built_model(changes):
    config = good_config(**changes)
    check_model_config(config)
    model = ReportModel(ReportModelConfig.from_dict(config))
    assert parameter_count(config) == sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize(
    "changes, reason",
    [
        (dict(channels="abcd"), "config: channels: must be a list of 1 to 8 whole numbers"),
        (dict(channels=[8, "x"]), "config: channels: must be a whole number"),
        (dict(image_size=1 << 20), "config: image_size: must be a whole number from 16 to 4,096"),
        (
            dict(image_size=4096, channels=[512, 16], convs_per_block=[1, 1]),
            "config: image_size: 4096 with channels [512, 16] makes",
        ),
        (dict(hidden_size=60000, vocab_size=900000), "config: describes 68,569,977,033 param"),
        (dict(hidden_size=True), "config: hidden_size: must be a whole number"),
        (dict(cell="transformer"), "config: cell: must be one of ['lstm', 'gru']"),
        (dict(dropout=float("nan")), "config: dropout: must be a number in [0, 1)"),
        (dict(num_findings=3), "config: num_findings: must be 9"),
        (dict(convs_per_block=[1]), "config: convs_per_block: needs one count per block (4)"),
        (dict(colour=True), "config: colour: is not a field of the report model"),
        (dict(image_size=40), "config: image_size: must be a multiple of 16"),
    ],
)
def test_a_bad_config_is_refused_in_one_line_before_any_weight(changes, reason):
    with pytest.raises(ValueError) as info:
        check_model_config(good_config(**changes))
    assert str(info.value).startswith(reason), str(info.value)


def test_an_old_config_without_the_newer_fields_passes():
    config = good_config()
    del config["convs_per_block"], config["finding_input"]
    check_model_config(config)
    with pytest.raises(ValueError, match="config: max_len: is missing"):
        check_model_config({k: v for k, v in good_config().items() if k != "max_len"})


def test_the_bundled_model_passes_both_checks():
    from minirad.models.report_checkpoint import load_report_model
    from minirad.report.pipeline import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the bundled weights are not built yet")
    model, _, meta = load_report_model(default_model_path())
    check_model_config(meta["config"])
    assert parameter_count(meta["config"]) == sum(p.data.size for p in model.parameters())
