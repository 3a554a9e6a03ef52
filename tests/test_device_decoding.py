"""Decoding and the report pipeline on a device: the same reports, and the copies counted.

Two claims are proved here. On the host (numpy) decoding gives exactly the reports it gave
before it learnt to run on a device: digests of the bundled model's reports on two phantoms,
recorded from main before the change. On a GPU backend a decoded word costs no copy between
host and device: the device-strict stand-in for CuPy (tests/device_standin.py) counts every
copy, while the backend "cupy" runs the real CUDA C kernels through the g++ emulation. Its
models are tiny (vocabulary 12, images 16 x 16), as the emulation is slow, not wrong.

Measured budgets, B images, T = max_len - 1 decoder steps, K = CHECK_EVERY:
  greedy, sample  h2d 0 (sample: 1, its uniform numbers)   d2h <= ceil(T / K) + 5
  beam, per image h2d <= steps that block a word           d2h = steps + 1
  `minirad report`, per image: h2d 1 (the pixels), d2h = the decode's + 1 (the findings)
"""

from __future__ import annotations

import math
import zlib

import device_standin
import numpy as np
import pytest
from PIL import Image

from minirad import backend
from minirad.autograd import Tensor, array_module, no_grad
from minirad.data.phantom import synthesize
from minirad.data.vocab import EOS_ID, SPECIALS, Vocabulary
from minirad.models.report_checkpoint import load_report_model, save_report_model
from minirad.models.report_model import ReportModel, ReportModelConfig
from minirad.report import decoding
from minirad.report.decoding import CHECK_EVERY, Sentences, beam_search, generate, greedy, sample
from minirad.report.demo import run_demo
from minirad.report.evaluation import evaluate
from minirad.report.pipeline import Reporter, default_model_path

needs_standin = pytest.mark.skipif(
    not device_standin.installed(), reason="counts copies with the device stand-in (no GPU here)"
)

# Results back at the end of greedy decoding and sampling: tokens, alphas, log P, done, lengths.
RESULT_COPIES = 5

WORDS = ("findings", "impression", ".", "the", "heart", "lungs", "are", "clear")
TINY_VOCAB = Vocabulary((*SPECIALS, *WORDS))  # 12 tokens
PERIOD_ID = TINY_VOCAB.id(".")


def tiny_config(max_len: int = 12) -> ReportModelConfig:
    return ReportModelConfig(
        vocab_size=len(TINY_VOCAB),
        image_size=16,
        max_len=max_len,
        channels=(2, 2, 2, 4),
        convs_per_block=(1, 1, 1, 1),
        summary_size=4,
        embed_dim=4,
        hidden_size=4,
        attention_dim=4,
        dropout=0.0,
    )


def tiny_model(max_len: int = 12, eos_bias: float = 0.0) -> ReportModel:
    """A tiny random model on the host; eos_bias > 0 ends its reports sooner, < 0 never."""
    model = ReportModel(tiny_config(max_len), rng=0)
    model.output.bias.data[EOS_ID] += eos_bias
    return model


def tiny_images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).random((n, 1, 16, 16)).astype(np.float32)


def decode_on(name: str, model: ReportModel, images: np.ndarray, decoder, **options):
    """decoder(model, encoded, **options) with the model and the images on backend `name`,
    and the copies the decoding alone made (the encoder's excluded)."""
    with backend.use_backend(name), no_grad():
        model.to()
        encoded = model.encode(Tensor(backend.to_device(images)))
        with device_standin.count_transfers(where=True) as moved:
            decoded = decoder(model, encoded, **options)
        model.to("cpu")
    return decoded, moved


def assert_same_reports(actual, expected, where: str) -> None:
    """Same words, same ending; log P and attention to float32 rounding (the CUDA C kernels
    sum in another order than NumPy)."""
    assert [d.tokens for d in actual] == [d.tokens for d in expected], where
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.finished == e.finished, f"{where}: image {i}"
        assert a.log_prob == pytest.approx(e.log_prob, abs=1e-4), f"{where}: image {i}"
        assert isinstance(a.attention, np.ndarray), f"{where}: image {i} attention not on host"
        np.testing.assert_allclose(a.attention, e.attention, atol=1e-5, err_msg=where)


class StepCounter:
    """Wraps model.step to count the decoder steps a decoding runs."""

    def __init__(self, model: ReportModel) -> None:
        self.calls, self._step = 0, model.step
        model.step = self

    def __call__(self, *args):
        self.calls += 1
        return self._step(*args)


# ---------------------------------------------------------------------------------------------
# On the host: exactly the reports of before


def digest(d: decoding.Decoded, L: int) -> tuple:
    """(words, crc32 of the token ids, log P, sum of alpha * cell index, dtype of alpha)."""
    crc = zlib.crc32(np.array(d.tokens, np.int64).tobytes())
    centre = float((d.attention * np.arange(L)).sum())
    return len(d.tokens), crc, round(d.log_prob, 4), round(centre, 3), str(d.attention.dtype)


# The words must be the same to the token; the numbers only to what float32 arithmetic keeps
# across CPUs: OpenBLAS picks its kernels by CPU model, and a float32 product summed in another
# order moves a 40-word log P by about 2e-4 (seen on CI's machine against the recording's).
LOG_P_TOL, CENTRE_TOL = 2e-3, 2e-2


def assert_same_report(got: tuple, before: tuple, where: str) -> None:
    words, crc, log_p, centre, dtype = got
    assert (words, crc, dtype) == (before[0], before[1], before[4]), f"{where}: other words"
    assert abs(log_p - before[2]) <= LOG_P_TOL, f"{where}: log P {log_p} != {before[2]}"
    assert abs(centre - before[3]) <= CENTRE_TOL, f"{where}: attention {centre} != {before[3]}"


# Recorded on main at 8cfbd21 (before decoding ran on a device), numpy backend.
BEFORE = {
    "greedy": [
        (43, 3371272634, -19.0796, 1301.966, "float64"),
        (40, 1763141721, -12.2655, 1472.709, "float64"),
    ],
    "beam, sentence blocking": [
        (47, 238268424, -10.8051, 1403.516, "float32"),
        (49, 4196867277, -12.2771, 1806.095, "float32"),
    ],
    "beam of 2, trigram blocking": [
        (62, 2199442221, -21.8243, 1871.857, "float32"),
        (55, 920870711, -21.1447, 2028.24, "float32"),
    ],
    "sample": [
        (59, 784343932, -33.1427, 1753.809, "float64"),
        (41, 848865769, -13.3286, 1497.351, "float64"),
    ],
}


@pytest.mark.skipif(not default_model_path().is_file(), reason="no bundled weights")
def test_on_numpy_the_bundled_model_writes_the_reports_it_wrote_before():
    with backend.use_backend("numpy"):
        model, vocab, _ = load_report_model(default_model_path())
        images = np.stack([p / np.float32(255) for p, _ in synthesize(2, 7, size=128)])[:, None]
        runs = {
            "greedy": ("greedy", {}),
            "beam, sentence blocking": ("beam", {"block_sentences": Sentences.of(vocab)}),
            "beam of 2, trigram blocking": ("beam", {"width": 2, "block_trigrams": True}),
            "sample": ("sample", {"rng": 5, "temperature": 0.8}),
        }
        L = model.config.grid_side**2
        for name, (method, options) in runs.items():
            decoded = generate(model, images, method, **options)
            assert len(decoded) == len(BEFORE[name]), name
            for index, (d, before) in enumerate(zip(decoded, BEFORE[name], strict=True)):
                assert_same_report(digest(d, L), before, f"{name}, image {index}")
            assert all(d.finished for d in decoded), name


# ---------------------------------------------------------------------------------------------
# Greedy and sampling on a device: no copy per word


@needs_standin
@pytest.mark.parametrize("max_len", [10, 26])
def test_greedy_on_a_device_copies_nothing_per_word(max_len):
    model, images = tiny_model(max_len, eos_bias=-50.0), tiny_images(3)  # never ends: T steps
    expected, _ = decode_on("numpy", model, images, greedy, max_len=max_len)
    decoded, moved = decode_on("cupy", model, images, greedy, max_len=max_len)
    assert_same_reports(decoded, expected, f"greedy, max_len {max_len}")
    assert not any(d.finished for d in decoded)
    steps = max_len - 1
    checks = steps // CHECK_EVERY  # the finished mask, read every CHECK_EVERY steps
    assert moved.h2d == 0, moved.sites
    assert moved.d2h == checks + RESULT_COPIES <= math.ceil(steps / CHECK_EVERY) + 5, moved.sites


@needs_standin
def test_greedy_on_a_device_stops_within_check_every_steps_of_the_last_eos():
    model, images = tiny_model(40, eos_bias=50.0), tiny_images(2)  # <eos> first, every image
    with backend.use_backend("numpy"):
        host_steps = StepCounter(model)
        expected, _ = decode_on("numpy", model, images, greedy, max_len=40)
    assert host_steps.calls == 1  # the host reads the mask every step
    device_steps = StepCounter(model)
    decoded, moved = decode_on("cupy", model, images, greedy, max_len=40)
    assert_same_reports(decoded, expected, "greedy, ends at once")
    assert [d.tokens for d in decoded] == [[], []] and all(d.finished for d in decoded)
    assert device_steps.calls == CHECK_EVERY  # the wasted steps of reading the mask rarely
    assert (moved.h2d, moved.d2h) == (0, 1 + RESULT_COPIES), moved.sites


@needs_standin
def test_sampling_on_a_device_uploads_its_numbers_once_and_draws_the_same_words():
    model, images = tiny_model(14), tiny_images(3)
    options = dict(max_len=14, temperature=1.5, rng=11)
    expected, _ = decode_on("numpy", model, images, sample, **options)
    decoded, moved = decode_on("cupy", model, images, sample, **options)
    assert_same_reports(decoded, expected, "sample")
    assert moved.h2d == 1, moved.sites  # the (T, B) uniform numbers
    assert moved.d2h <= math.ceil(13 / CHECK_EVERY) + RESULT_COPIES, moved.sites


# ---------------------------------------------------------------------------------------------
# Beam search on a device: one small copy per step


@needs_standin
@pytest.mark.parametrize(
    "blocking",
    [{}, {"block_trigrams": True, "block_sentences": Sentences(PERIOD_ID, frozenset({4, 5}))}],
    ids=["plain", "blocking"],
)
def test_beam_search_on_a_device_copies_its_best_candidates_once_per_step(blocking):
    model, images = tiny_model(16), tiny_images(2)
    options = dict(max_len=16, width=3, **blocking)
    expected, _ = decode_on("numpy", model, images, beam_search, **options)
    steps = StepCounter(model)
    decoded, moved = decode_on("cupy", model, images, beam_search, **options)
    assert_same_reports(decoded, expected, f"beam, {blocking or 'no blocking'}")
    # Per step: the 2K best candidates; per image: its best report's attention.
    assert moved.d2h == steps.calls + len(images), moved.sites
    if blocking:  # one upload on each step where a rule forbids a word, none otherwise
        assert 0 < moved.h2d <= steps.calls, moved.sites
    else:
        assert moved.h2d == 0, moved.sites


@needs_standin
def test_a_beam_wider_than_the_candidates_is_the_same_on_a_device():
    """Width 50 on a vocabulary of 12: fewer candidates than 2K, the live count changes."""
    model, images = tiny_model(4), tiny_images(1)
    expected, _ = decode_on("numpy", model, images, beam_search, max_len=4, width=50)
    decoded, _ = decode_on("cupy", model, images, beam_search, max_len=4, width=50)
    assert_same_reports(decoded, expected, "beam of 50")


@needs_standin
@pytest.mark.slow
def test_greedy_under_the_numba_cuda_simulator():
    """The `cuda` backend (Numba CUDA kernels, here in its simulator) decodes the same."""
    model, images = tiny_model(4, eos_bias=-50.0), tiny_images(2)
    expected, _ = decode_on("numpy", model, images, greedy, max_len=4)
    decoded, moved = decode_on("cuda", model, images, greedy, max_len=4)
    assert_same_reports(decoded, expected, "greedy on cuda")
    assert (moved.h2d, moved.d2h) == (0, RESULT_COPIES), moved.sites


# ---------------------------------------------------------------------------------------------
# The pipeline: `minirad report`, `demo`, `evaluate` on a device


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    save_report_model(path, tiny_model(12), TINY_VOCAB, info={"epoch": 1})
    return path


def parameter_count(path) -> int:
    with backend.use_backend("numpy"):
        return len(list(load_report_model(path)[0].parameters()))


@needs_standin
def test_a_checkpoint_loads_onto_the_active_device_and_saves_from_it(tiny_checkpoint, tmp_path):
    with backend.use_backend("cupy"):
        with device_standin.count_transfers() as moved:
            model, _, _ = load_report_model(tiny_checkpoint)
        assert {array_module(p.data).__name__ for p in model.parameters()} == {"cupy"}
        assert moved.h2d == len(list(model.parameters()))  # each weight once
        save_report_model(tmp_path / "again.npz", model, TINY_VOCAB)
    with backend.use_backend("numpy"):
        saved = load_report_model(tmp_path / "again.npz")[0].state_dict()
        for name, weight in tiny_model(12).state_dict().items():
            np.testing.assert_array_equal(saved[name], weight, err_msg=name)


@needs_standin
@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_report_on_a_device_moves_each_image_once_each_way(tiny_checkpoint, tmp_path, method):
    from minirad.report.render import write_outputs

    image_path = tmp_path / "chest.png"
    # 64 x 64 on disk (the input gate refuses fewer than 32 pixels a side), 16 x 16 once read.
    pixels = np.random.default_rng(1).random((64, 64))
    Image.fromarray((pixels * 255).astype(np.uint8)).save(image_path)
    with backend.use_backend("numpy"):
        expected = Reporter(tiny_checkpoint).report_file(image_path, method=method)
    with backend.use_backend("cupy"):
        reporter = Reporter(tiny_checkpoint)
        steps = StepCounter(reporter.model)
        with device_standin.count_transfers(where=True) as moved:
            report = reporter.report_file(image_path, method=method)
            paths = write_outputs(report, tmp_path / "out", "chest")
    assert report.words == expected.words and report.review.verdict == expected.review.verdict
    np.testing.assert_allclose(report.attention, expected.attention, atol=1e-5)
    assert all(p.is_file() for p in paths) and len(paths) == 4
    assert moved.h2d == 1, moved.sites  # the pixels
    if method == "beam":  # the decode's copy per step, then the summary and logits in one
        assert moved.d2h == steps.calls + 1, moved.sites
    else:
        assert moved.d2h <= math.ceil(11 / CHECK_EVERY) + RESULT_COPIES + 1, moved.sites


@needs_standin
def test_demo_on_a_device_moves_the_model_once_and_each_phantom_once(tiny_checkpoint, tmp_path):
    with backend.use_backend("cupy"), device_standin.count_transfers(where=True) as moved:
        pages = run_demo(tmp_path / "demo", n=2, model_path=tiny_checkpoint)
    assert len(pages) == 2 and all(p.is_file() for p in pages)
    assert (tmp_path / "demo" / "index.html").is_file()
    assert moved.h2d == parameter_count(tiny_checkpoint) + 2, moved.sites
    # Beam search (the demo's): per image at most 11 steps of one copy, its attention and its
    # finding probabilities.
    assert moved.d2h <= 2 * (11 + 1 + 1), moved.sites


@needs_standin
def test_evaluate_on_a_device_moves_the_model_and_each_batch_once(tiny_checkpoint, tmp_path):
    from minirad.data.synth import synthesize_dataset

    data = synthesize_dataset(tmp_path / "phantoms", n=12, seed=3, size=32)
    options = dict(split_name="train", method="greedy", limit=4)
    with backend.use_backend("numpy"):
        expected = evaluate(tiny_checkpoint, data, **options)
    with backend.use_backend("cupy"), device_standin.count_transfers(where=True) as moved:
        results = evaluate(tiny_checkpoint, data, **options)
    assert results["examples"] == expected["examples"]
    assert results["model"] == expected["model"]
    # One batch of 4, twice: decoded, then encoded again for the finding head's calibration.
    assert moved.h2d == parameter_count(tiny_checkpoint) + 2, moved.sites
    # The decode's, then the calibration's finding logits (one copy).
    assert moved.d2h <= math.ceil(11 / CHECK_EVERY) + RESULT_COPIES + 1, moved.sites
