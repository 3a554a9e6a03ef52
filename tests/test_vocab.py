"""R2Gen-style cleaning and the vocabulary: examples, min_count, <unk>, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minirad.data.reports import write_report
from minirad.data.vocab import SPECIALS, Vocabulary, clean_report, tokenize
from test_labeler import random_study


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("The heart is normal.  No effusion..", "the heart is normal . no effusion ."),
        (
            "No pneumothorax, effusion, or consolidation.",
            "no pneumothorax effusion or consolidation .",
        ),
        ("1. No pneumothorax. 2. Small left effusion.", "no pneumothorax . small left effusion ."),
        (
            "FINDINGS: Heart normal.\n\nIMPRESSION: Normal.",
            "findings heart normal . impression normal .",
        ),
        ("A 4.5 cm mass (stable).", "a 4.5 cm mass stable ."),  # R2Gen would write "45 cm"
        ('Left-sided "PICC" line; tip in SVC!', "leftsided picc line tip in svc ."),
        ("", ""),
        (" ... ", ""),
    ],
)
def test_clean_report(text, cleaned):
    assert clean_report(text) == cleaned


def test_tokenize_splits_the_cleaned_text():
    assert tokenize("Lungs are clear. No effusion.") == [
        "lungs",
        "are",
        "clear",
        ".",
        "no",
        "effusion",
        ".",
    ]


def test_min_count_and_specials():
    texts = ["No effusion."] * 3 + ["Small effusion."] * 2
    vocab = Vocabulary.build(texts, min_count=3)
    assert vocab.tokens[:4] == SPECIALS == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert vocab.pad_id == 0
    assert set(vocab.tokens[4:]) == {"no", "effusion", "."}  # "small" seen twice: dropped
    assert list(vocab.tokens[4:]) == sorted(vocab.tokens[4:])
    assert len(Vocabulary.build(texts, min_count=1)) == len(vocab) + 1


def test_unknown_words_become_unk():
    vocab = Vocabulary.build(["no effusion ."] * 3)
    ids = vocab.encode("No pneumothorax.")
    assert ids == [vocab.bos_id, vocab.id("no"), vocab.unk_id, vocab.id("."), vocab.eos_id]
    assert vocab.decode(ids) == "no <unk> ."


def test_encode_decode_round_trip_on_generated_reports():
    rng = np.random.default_rng(0)
    reports = [write_report(random_study(rng), rng) for _ in range(300)]
    vocab = Vocabulary.build(reports, min_count=1)
    for report in reports[:50]:
        ids = vocab.encode(report)
        assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
        assert vocab.unk_id not in ids
        assert vocab.decode(ids) == clean_report(report)


def test_max_len_keeps_bos_and_eos():
    vocab = Vocabulary.build(["a b c d e f ."] * 3)
    ids = vocab.encode("a b c d e f.", max_len=5)
    assert len(ids) == 5 and ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert vocab.decode(ids) == "a b c"
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode("a", max_len=1)


def test_decode_stops_at_eos_and_skips_padding():
    vocab = Vocabulary.build(["no effusion ."] * 3)
    ids = [vocab.bos_id, vocab.id("no"), vocab.id("effusion"), vocab.eos_id, vocab.id("no"), 0, 0]
    assert vocab.decode(ids) == "no effusion"
    assert vocab.decode(np.array([1, vocab.id("no"), 0, 0])) == "no"


def test_serialisation_round_trip_and_equality():
    vocab = Vocabulary.build(["the lungs are clear ."] * 3)
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab and restored.encode("lungs clear") == vocab.encode("lungs clear")
    assert restored != Vocabulary.build(["the heart is normal ."] * 3)
    # The tokens as a NumPy string array (how an .npz checkpoint stores them) come back too.
    as_array = np.array(vocab.to_dict()["tokens"])
    assert Vocabulary.from_dict({"tokens": [str(t) for t in as_array]}) == vocab


def test_bad_token_lists_are_refused():
    with pytest.raises(ValueError, match="start with"):
        Vocabulary(("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary((*SPECIALS, "a", "a"))
