"""The report model, its checkpoint and the decoders, on tiny models (fast, any backend)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from minirad import functional as F
from minirad.autograd import Tensor, no_grad
from minirad.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocabulary
from minirad.models.report_checkpoint import load_report_model, save_report_model
from minirad.models.report_model import ReportModel, ReportModelConfig, report_loss
from minirad.nn import checkpoint
from minirad.optim import Adam
from minirad.report.decoding import (
    Sentences,
    _Hypothesis,
    beam_search,
    decode,
    greedy,
    length_penalty,
    sample,
)

WORDS = ("a", "b", ".")
VOCAB_SIZE = len(SPECIALS) + len(WORDS)  # 7


def tiny(cell="lstm", vocab_size=VOCAB_SIZE, max_len=6, seed=0, dtype=np.float32):
    config = ReportModelConfig(
        vocab_size=vocab_size,
        image_size=16,
        channels=(4,),
        convs_per_block=(2,),
        summary_size=8,
        embed_dim=6,
        hidden_size=8,
        attention_dim=5,
        cell=cell,
        dropout=0.0,
        max_len=max_len,
    )
    return ReportModel(config, rng=seed, dtype=dtype)


def images(n=3, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).random((n, 1, 16, 16)).astype(dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_shapes(cell):
    model = tiny(cell)
    tokens = np.array([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 4, 4, 4, 2]])
    word_logits, finding_logits = model(Tensor(images()), tokens)
    assert word_logits.shape == (3, 4, 7)
    assert finding_logits.shape == (3, 9)
    encoded = model.encode(Tensor(images()))
    assert encoded.keys.shape == (3, 64, 4)  # a 16 x 16 image pooled once: 8 x 8 = 64 cells


def test_bad_inputs_name_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="images: expected shape"):
        model.encode(Tensor(np.zeros((2, 1, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="tokens: expected shape"):
        model(Tensor(images(2)), np.array([[1, 2]] * 3))
    with pytest.raises(ValueError, match="cell"):
        ReportModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError, match="image_size"):
        ReportModelConfig(vocab_size=10, image_size=100)


def test_gradient_of_the_joint_loss_matches_finite_differences():
    """The whole model end to end in float64: conv, summary, attention, LSTM, both losses
    (with the word loss's gradient let through to the encoder, so every path is checked)."""
    model = tiny(dtype=np.float64)
    x = images(2, dtype=np.float64)
    tokens = np.array([[1, 4, 5, 2], [1, 6, 2, 0]])
    findings = np.array([[1, 0, 0, 0, 1, 0, 0, 0, 0], [0] * 9])

    def loss_value():
        word_logits, finding_logits = model(Tensor(x), tokens, findings, True)
        return report_loss(word_logits, finding_logits, tokens[:, 1:], findings)[0]

    loss_value().backward()
    rng = np.random.default_rng(0)
    for name, p in model.named_parameters():
        index = tuple(rng.integers(0, n) for n in p.shape)
        analytic = p.grad[index]
        old, h = p.data[index], 1e-6
        p.data[index] = old + h
        up = loss_value().item()
        p.data[index] = old - h
        down = loss_value().item()
        p.data[index] = old
        numeric = (up - down) / (2 * h)
        assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (name, index)


def test_a_few_adam_steps_fit_a_tiny_batch():
    model = tiny()
    x, tokens = images(2), np.array([[1, 4, 5, 6, 2], [1, 6, 6, 2, 0]])
    findings = np.array([[1] + [0] * 8, [0] * 8 + [1]])
    optimizer = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        optimizer.zero_grad()
        loss = report_loss(*model(Tensor(x), tokens, findings), tokens[:, 1:], findings)[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    decoded = greedy(model, model.encode(Tensor(x)), max_len=6)
    assert [d.tokens for d in decoded] == [[4, 5, 6], [6, 6]]


def test_the_decoder_reads_the_true_findings_in_training_and_the_decisions_after():
    model = tiny()
    x, tokens = Tensor(images(2)), np.array([[1, 4, 5, 2], [1, 6, 2, 0]])
    encoded = model.encode(x)
    p = encoded.finding_probabilities.numpy()
    assert np.array_equal(encoded.finding_inputs.numpy(), (p >= 0.5).astype(np.float32))

    # Teacher forcing: the words depend on the findings passed in...
    none, some = np.zeros((2, 9)), np.eye(2, 9)
    assert not np.allclose(model(x, tokens, none)[0].numpy(), model(x, tokens, some)[0].numpy())
    # ... and without them, the decoder reads the head's decisions.
    decided = (p >= 0.5).astype(np.float64)
    assert np.allclose(model(x, tokens)[0].numpy(), model(x, tokens, decided)[0].numpy())

    # No word-loss gradient reaches the finding head through a 0/1 input.
    word_logits, _ = model(x, tokens, some)
    F.cross_entropy(word_logits.reshape(-1, VOCAB_SIZE), tokens[:, 1:].reshape(-1)).backward()
    head_gradient = model.finding_head.weight.grad
    assert head_gradient is None or not head_gradient.any()
    with pytest.raises(ValueError, match="findings: expected shape"):
        model(x, tokens, np.zeros((2, 3)))


@pytest.mark.parametrize("encoder_learns_from_words", [False, True])
def test_forward_leaves_the_encoded_image_as_the_encoder_made_it(encoder_learns_from_words):
    model = tiny()
    x, tokens = Tensor(images(2)), np.array([[1, 4, 5, 2], [1, 6, 2, 0]])
    made = []
    encode = model.encode

    def encode_and_keep(images):
        made.append(encode(images))
        return made[-1]

    model.encode = encode_and_keep  # an instance attribute: only this model is wrapped
    model(x, tokens, np.eye(2, 9), encoder_learns_from_words)
    (encoded,) = made
    p = encoded.finding_probabilities.numpy()
    # Still the head's decisions, not the true findings that teacher forcing fed the decoder.
    assert np.array_equal(encoded.finding_inputs.numpy(), (p >= 0.5).astype(np.float32))


def test_by_default_the_word_loss_stops_at_the_decoder():
    model = tiny()
    x, tokens = Tensor(images(2)), np.array([[1, 4, 5, 2], [1, 6, 2, 0]])

    def word_loss_gradients(encoder_learns_from_words):
        model.zero_grad()
        word_logits, _ = model(x, tokens, np.eye(2, 9), encoder_learns_from_words)
        F.cross_entropy(word_logits.reshape(-1, VOCAB_SIZE), tokens[:, 1:].reshape(-1)).backward()
        return {name: p.grad for name, p in model.named_parameters()}

    cut = word_loss_gradients(False)
    for name, grad in cut.items():
        reached = grad is not None and grad.any()
        encoder_side = name.startswith(("encoder.", "summary.", "finding_head."))
        assert reached != encoder_side, name  # the decoder's weights only
    joint = word_loss_gradients(True)
    assert joint["encoder.blocks.0.weight"].any() and joint["summary.weight"].any()
    # Cutting the graph changes no value: the same logits either way.
    assert np.array_equal(model(x, tokens)[0].numpy(), model(x, tokens, None, True)[0].numpy())


def test_a_probability_decoder_lets_the_words_train_the_head():
    config = dataclasses.replace(tiny().config, finding_input="probabilities")
    model = ReportModel(config, rng=0)
    x, tokens = Tensor(images(2)), np.array([[1, 4, 5, 2], [1, 6, 2, 0]])
    encoded = model.encode(x)
    assert encoded.finding_inputs is encoded.finding_probabilities
    word_logits, _ = model(x, tokens, np.eye(2, 9), True)  # findings are ignored in this mode
    F.cross_entropy(word_logits.reshape(-1, VOCAB_SIZE), tokens[:, 1:].reshape(-1)).backward()
    assert model.finding_head.weight.grad.any()
    # Checkpoints from before the option existed read probabilities.
    old = {k: v for k, v in config.to_dict().items() if k != "finding_input"}
    assert ReportModelConfig.from_dict(old).finding_input == "probabilities"
    with pytest.raises(ValueError, match="finding_input"):
        dataclasses.replace(config, finding_input="logits")


def test_checkpoint_round_trip_keeps_outputs_and_vocabulary(tmp_path):
    model = tiny()
    vocab = Vocabulary(SPECIALS + WORDS)
    save_report_model(tmp_path / "m.npz", model, vocab, info={"epoch": 3})
    loaded, loaded_vocab, meta = load_report_model(tmp_path / "m.npz")
    assert loaded_vocab == vocab and meta["info"]["epoch"] == 3
    assert meta["preprocessing"]["size"] == 16
    x = Tensor(images())
    with no_grad():
        a, b = model.encode(x).finding_logits.numpy(), loaded.encode(x).finding_logits.numpy()
    np.testing.assert_array_equal(a, b)


def test_checkpoint_errors_are_one_line(tmp_path):
    checkpoint.save({"w": np.zeros(3)}, tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not a minirad report model"):
        load_report_model(tmp_path / "plain.npz")
    model = tiny()
    save_report_model(tmp_path / "m.npz", model, Vocabulary(SPECIALS + WORDS + ("c",)))
    with pytest.raises(ValueError, match="vocabulary has 8 tokens, the model 7"):
        load_report_model(tmp_path / "m.npz")


# ---------------------------------------------------------------------------------------------
# Decoding


def sequence_log_prob(model, image, tokens):
    """log P(tokens, <eos> | image) by teacher forcing: an independent recomputation."""
    full = np.array([[1, *tokens, 2]])
    with no_grad():
        word_logits, _ = model(Tensor(image[None]), full)
        log_p = F.log_softmax(word_logits, axis=-1).numpy()[0]
    return float(sum(log_p[t, w] for t, w in enumerate(full[0, 1:])))


def test_greedy_log_prob_equals_teacher_forcing():
    model, x = tiny(max_len=8), images(3)
    for d, image in zip(greedy(model, model.encode(Tensor(x)), 8), x, strict=True):
        if d.finished:
            assert d.log_prob == pytest.approx(sequence_log_prob(model, image, d.tokens), abs=1e-5)
        assert d.attention.shape == (len(d.tokens), 64)
        np.testing.assert_allclose(d.attention.sum(axis=1), 1.0, rtol=1e-5)


def test_beam_of_width_one_is_greedy():
    model, x = tiny(max_len=8), images(4)
    encoded = model.encode(Tensor(x))
    g = greedy(model, encoded, 8)
    b = beam_search(model, encoded, 8, width=1, length_exponent=0.0)
    assert [d.tokens for d in b] == [d.tokens for d in g]


def test_a_wide_beam_finds_the_exhaustive_optimum():
    """With width >= every possible prefix, beam search is exhaustive search."""
    model, x = tiny(max_len=4, seed=3), images(2, seed=5)
    words = range(2, 7)  # <eos>, <unk>, a, b, .
    compared = 0
    for image in x:
        best, best_tokens = -np.inf, None
        for length in range(0, 3):  # max_len 4 = <bos> + up to 2 words + <eos>
            for tokens in itertools.product([w for w in words if w != 2], repeat=length):
                lp = sequence_log_prob(model, image, list(tokens))
                if lp > best:
                    best, best_tokens = lp, list(tokens)
        (found,) = beam_search(
            model, model.encode(Tensor(image[None])), 4, width=50, length_exponent=0.0
        )
        if found.finished:
            assert found.tokens == best_tokens
            assert found.log_prob == pytest.approx(best, abs=1e-5)
            compared += 1
    assert compared > 0  # the random model did end a report within the limit


def test_trigram_blocking_forbids_a_repeated_trigram():
    model = tiny(max_len=30, seed=7)
    # Make the decoder love "a b a b a ...": bias the output towards "a" and "b".
    model.output.bias.data[4:6] += 8.0
    encoded = model.encode(Tensor(images(1)))
    (free,) = beam_search(model, encoded, 30, width=2)
    (blocked,) = beam_search(model, encoded, 30, width=2, block_trigrams=True)
    trigrams = [tuple(blocked.tokens[i : i + 3]) for i in range(len(blocked.tokens) - 2)]
    free_trigrams = [tuple(free.tokens[i : i + 3]) for i in range(len(free.tokens) - 2)]
    assert len(free_trigrams) > len(set(free_trigrams))  # the loop happens without blocking
    assert len(trigrams) == len(set(trigrams))


def sentences_per_section(tokens, period=6, sections=()):
    """[[sentence, ...] per section] of a token list, sentences as tuples."""
    result, current = [[]], []
    for token in tokens:
        if token in sections:
            result.append([])
            current = []
        elif token == period:
            result[-1].append(tuple(current))
            current = []
        else:
            current.append(token)
    return result


def test_sentence_blocking_forbids_a_repeated_sentence_within_a_section():
    # Teach a tiny model the report "a . a . b .", which says "a" twice.
    model, x = tiny(max_len=12), images(1)
    tokens = np.array([[1, 4, 6, 4, 6, 5, 6, 2]])
    optimizer = Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        report_loss(*model(Tensor(x), tokens), tokens[:, 1:], np.zeros((1, 9)))[0].backward()
        optimizer.step()
    encoded = model.encode(Tensor(x))
    period_only = Sentences(period_id=6, section_ids=frozenset())
    (free,) = beam_search(model, encoded, 12, width=3)
    (blocked,) = beam_search(model, encoded, 12, width=3, block_sentences=period_only)
    assert free.tokens == [4, 6, 4, 6, 5, 6]  # it learnt the repeat
    (sentences,) = sentences_per_section(blocked.tokens)
    assert len(sentences) == len(set(sentences)) >= 2, blocked.tokens


def test_a_sentence_may_repeat_in_another_section():
    # ids: 4 "a", 5 "b" (here a section name, like "impression"), 6 "."
    sentences = Sentences(period_id=6, section_ids=frozenset({5}))

    def repeats(tokens):
        return _Hypothesis(tokens, [], 0.0, 0).open_sentence_is_a_repeat(sentences)

    assert repeats([4, 6, 4])  # "a . a": closing it would repeat "a"
    assert not repeats([4, 6, 4, 4])  # "a . a a": a different sentence so far
    assert not repeats([4, 6, 5, 4])  # "a . <section> a": a new section starts afresh
    assert not repeats([4, 6])  # nothing open
    assert Sentences.of(Vocabulary((*SPECIALS, "a", "b", "."))) == Sentences(6, frozenset())
    with pytest.raises(ValueError, match="no '.' token"):
        Sentences.of(Vocabulary((*SPECIALS, "a")))


def test_sampling_is_seeded_and_a_cold_temperature_is_greedy():
    model = tiny(max_len=10)
    encoded = model.encode(Tensor(images(3)))
    first = sample(model, encoded, 10, temperature=1.0, rng=42)
    again = sample(model, encoded, 10, temperature=1.0, rng=42)
    assert [d.tokens for d in first] == [d.tokens for d in again]
    cold = sample(model, encoded, 10, temperature=1e-4, rng=0)
    assert [d.tokens for d in cold] == [d.tokens for d in greedy(model, encoded, 10)]


def test_decode_checks_its_options():
    model = tiny()
    encoded = model.encode(Tensor(images(1)))
    with pytest.raises(ValueError, match="method"):
        decode(model, encoded, "nucleus")
    with pytest.raises(ValueError, match="width"):
        decode(model, encoded, "beam", width=0)
    with pytest.raises(ValueError, match="temperature"):
        decode(model, encoded, "sample", temperature=0.0)
    with pytest.raises(ValueError, match="length_exponent"):
        decode(model, encoded, "beam", length_exponent=-1.0)
    assert length_penalty(1, 0.6) == pytest.approx(1.0)


def test_the_special_ids_are_every_vocabularys():
    vocab = Vocabulary.build(["No effusion. No pneumothorax."], min_count=1)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (
        PAD_ID,
        BOS_ID,
        EOS_ID,
        UNK_ID,
    )
    assert [vocab.tokens[i] for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)] == list(SPECIALS)


# ---------------------------------------------------------------------------------------------
# Which dataset formats a report model trains on


def test_read_records_finds_each_format(tmp_path):
    from PIL import Image

    from minirad.data.synth import synthesize_dataset
    from minirad.models.report_data import read_records, true_findings

    phantoms = synthesize_dataset(tmp_path / "phantoms", n=5, seed=0, size=32)
    records = read_records(phantoms)
    assert len(records) == 5 and read_records(phantoms / "annotation.json")[0].id == records[0].id
    assert all(true_findings(r) == {f["name"] for f in r.findings} for r in records)

    iu = tmp_path / "iu"
    iu.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(iu / "1_front.png")
    (iu / "indiana_reports.csv").write_text(
        "uid,findings,impression\n1,Small left pleural effusion.,Effusion.\n"
    )
    (iu / "indiana_projections.csv").write_text("uid,filename,projection\n1,1_front.png,Frontal\n")
    (record,) = read_records(iu)
    assert true_findings(record) == {"pleural_effusion"}  # no ground truth: the labeler reads it

    classes = tmp_path / "classes"
    (classes / "normal").mkdir(parents=True)
    with pytest.raises(ValueError, match="needs report text"):
        read_records(classes)


def test_validate_writes_its_reports_in_eval_mode_and_restores_the_mode(monkeypatch):
    import minirad.models.train_report as train_module
    from minirad.models.report_data import ReportArrays
    from minirad.report.decoding import Decoded

    model, vocab = tiny(), Vocabulary(SPECIALS + WORDS)
    modes = []

    def generate_and_note_the_mode(model, images, **options):
        modes.append(model.training)
        return [Decoded([vocab.id("a"), vocab.id(".")], np.zeros((2, 1)), -1.0, True)]

    monkeypatch.setattr(train_module, "generate", generate_and_note_the_mode)
    val = ReportArrays(
        ids=["x"],
        images=images(1),
        tokens=np.array([[1, 4, 6, 2, 0, 0]]),
        findings=np.zeros((1, 9), dtype=np.float32),
        references=["a ."],
    )
    model.train()
    train_module.validate(model, vocab, val)
    model.eval()
    train_module.validate(model, vocab, val)
    assert modes == [False, False]  # dropout off while writing, whoever called
    assert not model.training  # and the caller's mode is back
