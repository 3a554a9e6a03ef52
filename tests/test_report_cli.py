"""`minirad report | demo | evaluate | train` end to end, through `minirad.cli.main`.

`report`, `demo` and `evaluate` use the bundled weights (minirad/weights/default.npz); `train`
runs on a tiny synthesized dataset at 32 pixels, so every test here takes seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from minirad.cli import main
from minirad.data.phantom import synthesize
from minirad.data.synth import synthesize_dataset
from minirad.models.report_checkpoint import load_report_model
from minirad.models.train_report import TrainConfig, last_path, train_report_model
from minirad.report.demo import run_demo
from minirad.report.pipeline import default_model_path
from test_readers import PATIENT_ID, PATIENT_NAME, write_dicom

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="the bundled weights are not built yet"
)


@pytest.fixture(scope="module")
def phantom():
    """One phantom radiograph, (128, 128) uint8, with a finding or two."""
    ((image, _),) = synthesize(1, seed=99, size=128)
    return image


def write_inputs(folder, phantom):
    """The same phantom as a 12-bit DICOM (with patient identifiers), a 16-bit PNG, a JPEG."""
    folder.mkdir()
    write_dicom(folder / "chest.dcm", (phantom.astype(np.uint16) * 16))
    Image.fromarray(phantom.astype(np.uint16) * 257).save(folder / "chest16.png")  # I;16
    Image.fromarray(phantom).save(folder / "chest.jpg", quality=95)
    return [folder / "chest.dcm", folder / "chest16.png", folder / "chest.jpg"]


def test_report_on_dicom_png16_and_jpeg(tmp_path, phantom, capsys):
    files = write_inputs(tmp_path / "in", phantom)
    assert Image.open(files[1]).mode.startswith("I")  # really 16 bits
    out = tmp_path / "out"
    assert main(["report", *map(str, files), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("FINDINGS:") == 3 and printed.count("Review:") == 3
    for stem in ("chest-dcm", "chest16", "chest-jpg"):  # chest.dcm and chest.jpg share a stem
        for suffix in (".txt", ".json", ".html", ".png"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0
    result = json.loads((out / "chest-dcm.json").read_text())
    assert result["review"]["verdict"] in ("accepted", "needs review")
    assert {f["name"] for f in result["findings"]} >= {"cardiomegaly", "nodule"}
    assert result["input"]["file"] == "chest.dcm" and len(result["input"]["sha256"]) == 64
    html = (out / "chest-dcm.html").read_text()
    assert html.count("attention for") == html.count("class='word'") > 10  # a map per word
    for path in out.iterdir():  # never a patient identifier, in any output
        data = path.read_bytes()
        assert PATIENT_NAME.encode() not in data and PATIENT_ID.encode() not in data


def test_report_json_goes_to_stdout(tmp_path, phantom, capsys):
    files = write_inputs(tmp_path / "in", phantom)
    assert main(["report", str(files[2]), "--json", "--beam", "2"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["decoding"] == {"method": "beam", "width": 2, "block_sentences": True}
    assert main(["report", str(files[2]), "--json", "--beam", "1"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["decoding"] == {"method": "greedy"}


def test_a_beam_of_width_zero_is_refused(tmp_path, phantom, capsys):
    files = write_inputs(tmp_path / "in", phantom)
    assert main(["report", str(files[2]), "--beam", "0"]) == 1
    assert capsys.readouterr().err.strip() == (
        "minirad: error: --beam: the beam width must be >= 1 (1 = greedy), got 0"
    )


def test_bad_files_get_one_line_each_and_exit_1(tmp_path, phantom, capsys):
    folder = tmp_path / "in"
    good = write_inputs(folder, phantom)[1]
    png = good.read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image\n")
    bad = [folder / "truncated.png", folder / "empty.png", folder / "notes.png"]
    code = main(["report", *map(str, bad), str(good), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.strip().splitlines()
    assert errors[-1].startswith("reports written to")
    assert len(errors) == 4 and "Traceback" not in captured.err
    for path, line in zip(bad, errors, strict=False):
        assert line.startswith(f"minirad: error: {path}: ")
    assert (tmp_path / "out" / "chest16.html").is_file()  # the good one was still reported
    assert not (tmp_path / "out" / "truncated.html").exists()


def test_report_on_a_folder_and_a_missing_file(tmp_path, phantom, capsys):
    write_inputs(tmp_path / "in", phantom)
    assert main(["report", str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.count("== ") == 3
    assert main(["report", str(tmp_path / "nothing.png")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_demo_writes_pages_and_prints_where(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "2"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "index.html") in printed
    assert len(list((out / "reports").glob("*.html"))) == 2
    assert "review:" in printed


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return synthesize_dataset(tmp_path_factory.mktemp("data") / "phantoms", n=30, seed=5, size=64)


def test_evaluate_prints_the_model_and_both_baselines(tiny_dataset, capsys):
    assert main(["evaluate", "--data", str(tiny_dataset), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for system in ("model", "constant normal report", "nearest neighbour", "reference"):
        assert set(results[system]["nlg"]) == {
            "BLEU-1",
            "BLEU-2",
            "BLEU-3",
            "BLEU-4",
            "ROUGE-L",
            "CIDEr",
        }
        assert 0.0 <= results[system]["clinical"]["micro"]["f1"] <= 1.0
    assert results["reference"]["clinical"]["micro"]["f1"] == 1.0  # the labeler's ceiling
    assert results["constant normal report"]["distinct"] == 1
    assert main(["evaluate", "--data", str(tiny_dataset)]) == 0
    assert "nearest neighbour" in capsys.readouterr().out


def test_evaluate_plays_the_pointing_game_on_phantoms(tiny_dataset, tmp_path, capsys):
    chart = tmp_path / "pointing.png"
    arguments = ["evaluate", "--data", str(tiny_dataset), "--split", "train", "--beam", "1"]
    assert main([*arguments, "--json", "--pointing", str(chart)]) == 0
    pointing = json.loads(capsys.readouterr().out)["pointing"]
    assert pointing, "21 phantoms and not one named lesion scored"
    for row in pointing.values():
        assert 0 <= row["hits"] <= row["words"] and 0 <= row["chance"] <= 1
    assert pointing["all"]["words"] == sum(r["words"] for n, r in pointing.items() if n != "all")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(arguments) == 0
    assert "pointing game" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Training: tiny, fast, and checked for what matters (determinism, resume, Ctrl-C)

TINY = dict(image_size=32, batch_size=8, val_limit=3, max_len=80, warmup_epochs=1)


def weights(path):
    model, _, _ = load_report_model(path)
    return model.state_dict()


def test_train_writes_best_last_and_curves(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code = main(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--val-limit",
            "3",
            "--warmup-epochs",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "best model" in printed
    assert out.is_file() and last_path(out).is_file()
    assert out.with_name("m.npz.curves.png").stat().st_size > 0
    _, vocab, meta = load_report_model(out)
    assert meta["preprocessing"]["size"] == 32 and len(vocab) > 10


def test_same_seed_same_weights_and_resume_is_exact(tiny_dataset, tmp_path, monkeypatch):
    import minirad.models.train_report as train_module

    silent = lambda message: None  # noqa: E731
    config = TrainConfig(epochs=3, **TINY)
    straight = train_report_model(tiny_dataset, tmp_path / "a.npz", config, log=silent)
    again = train_report_model(tiny_dataset, tmp_path / "b.npz", config, log=silent)
    wa, wb = weights(last_path(tmp_path / "a.npz")), weights(last_path(tmp_path / "b.npz"))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)

    # The same run, stopped by Ctrl-C at the start of epoch 3, then resumed.
    real_epoch = train_module._train_epoch

    def stop_at_epoch_3(model, optimizer, train, config, rng, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(model, optimizer, train, config, rng, epoch)

    monkeypatch.setattr(train_module, "_train_epoch", stop_at_epoch_3)
    stopped = train_report_model(tiny_dataset, tmp_path / "c.npz", config, log=silent)
    assert stopped.interrupted and stopped.history.epoch == [1, 2]
    monkeypatch.setattr(train_module, "_train_epoch", real_epoch)
    resumed = train_report_model(tiny_dataset, tmp_path / "c.npz", config, resume=True, log=silent)
    wc = weights(last_path(tmp_path / "c.npz"))
    assert all(np.array_equal(wa[k], wc[k]) for k in wa)
    assert resumed.history.epoch == [1, 2, 3] == straight.history.epoch
    assert resumed.history.finding_loss == straight.history.finding_loss
    assert straight.history.finding_loss == again.history.finding_loss


def test_ctrl_c_leaves_a_usable_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import minirad.models.train_report as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_train_epoch", interrupted)
    out = tmp_path / "m.npz"
    result = train_report_model(
        tiny_dataset, out, TrainConfig(epochs=2, **TINY), log=lambda m: None
    )
    assert result.interrupted
    model, vocab, meta = load_report_model(out)
    assert meta["info"]["interrupted"] is True


def test_train_refuses_bad_arguments_in_one_line(tiny_dataset, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz")]) == 1
    assert "no annotation.json" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "m.pt")]) == 1
    assert "must end in .npz" in capsys.readouterr().err
    assert (
        main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "m.npz"), "--resume"])
        == 1
    )
    assert "m.npz.last.npz not found" in capsys.readouterr().err


def test_the_library_names_its_arguments_and_the_cli_names_its_flags(
    tiny_dataset, tmp_path, capsys
):
    with pytest.raises(ValueError, match=r"^warmup_epochs: must be an integer >= 0, got -1$"):
        TrainConfig(warmup_epochs=-1)
    with pytest.raises(ValueError, match=r"^out: .*m\.pt must end in \.npz$"):
        train_report_model(tiny_dataset, tmp_path / "m.pt")
    command = ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "m.npz")]
    assert main([*command, "--warmup-epochs", "-1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "minirad: error: --warmup-epochs: must be an integer >= 0, got -1"
    )
    assert main([*command[:-1], str(tmp_path / "m.pt")]) == 1
    assert capsys.readouterr().err.startswith("minirad: error: --out: ")
    with pytest.raises(ValueError, match=r"^n: need at least one phantom"):
        run_demo(tmp_path / "demo", n=0)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n", "0"]) == 1
    assert "error: --n: need at least one phantom" in capsys.readouterr().err


def test_train_flags_default_to_train_configs_own(tmp_path, monkeypatch):
    import minirad.models.train_report as train_module

    configs = []

    def record(data, out, config, resume):
        configs.append(config)
        raise ValueError("recorded")

    monkeypatch.setattr(train_module, "train_report_model", record)
    command = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz")]
    assert main(command) == 1
    assert main([*command, "--epochs", "5", "--batch-size", "4", "--cell", "gru"]) == 1
    assert configs == [TrainConfig(), TrainConfig(epochs=5, batch_size=4, cell="gru")]
