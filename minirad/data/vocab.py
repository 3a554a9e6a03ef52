"""Report text -> token ids and back: R2Gen's cleaning and a vocabulary that a checkpoint can hold.

    clean_report("The heart is normal.  No effusion..")   # "the heart is normal . no effusion ."
    vocab = Vocabulary.build(train_reports, min_count=3)
    ids = vocab.encode(report, max_len=60)               # [1, ..., 2]  (<bos> ... <eos>)
    vocab.decode(ids)                                      # the cleaned report back

Cleaning follows R2Gen (Chen et al., 2020, `clean_report_iu_xray`), the preprocessing most
report-generation papers report BLEU on: lower-case, collapse "..", drop list numbers ("1. "),
split into sentences, strip punctuation, and join the sentences with " . ", so that the period
between sentences is a token of its own. Metrics computed on text cleaned otherwise are not
comparable with the published tables.

One deliberate difference: R2Gen's character class deletes every ".", so "4.5 cm" becomes
"45 cm". minirad keeps a decimal point between two digits, since a size is a finding.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# R2Gen deletes these characters inside a sentence; its class [.,?;*!%^&_+():-\[\]{}] has a
# range ":-\[" that also covers ;<=>?@ and A-Z (harmless after lower-casing). Written out here.
_PUNCTUATION = re.compile(r"[.,?;*!%^&_+():<=>@\[\]{}\-\"/\\']")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_DECIMAL_MARK = "\x00"  # stands in for a decimal point while punctuation is stripped


def _split_sentences(text: str) -> list[str]:
    """R2Gen's report_cleaner: collapse repeated periods, drop list numbers, split at ". "."""
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"(?:^|\.?\s)[1-9]\.\s", ". ", text)  # "1. a 2. b" -> ". a. b": numbers go
    text = re.sub(r"\s+", " ", text).strip().lower()
    return text.split(". ")


def _clean_sentence(sentence: str) -> str:
    """R2Gen's sent_cleaner: strip quotes, slashes and punctuation; keep decimals (see above)."""
    sentence = _DECIMAL.sub(_DECIMAL_MARK, sentence)
    sentence = _PUNCTUATION.sub("", sentence)
    return " ".join(sentence.replace(_DECIMAL_MARK, ".").split())


def clean_report(text: str) -> str:
    """The report as R2Gen trains on it: "sentence one . sentence two ." (empty for no words)."""
    sentences = [_clean_sentence(s) for s in _split_sentences(text)]
    sentences = [s for s in sentences if s]  # R2Gen's `!= []` test never drops one; we do
    return " . ".join(sentences) + " ." if sentences else ""


def tokenize(text: str) -> list[str]:
    """The tokens of the cleaned report: words, numbers and "." between sentences."""
    return clean_report(text).split()


# Special tokens. R2Gen uses one id, 0, for padding, the start and the end of a report (and puts
# <unk> last); a decoder then cannot tell "stop" from "padding" by the id alone. minirad keeps
# them apart, with <pad> = 0 so that zero-filled batches are padding, as in PyTorch's convention
# of padding_idx=0 and ignore_index for the loss.
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
# Their ids: the same in every vocabulary, since each starts with SPECIALS. Code that holds no
# Vocabulary (a decoder, the loss, the batcher) uses these names, never the bare numbers.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (SPECIALS.index(token) for token in (PAD, BOS, EOS, UNK))


@dataclass(frozen=True)
class Vocabulary:
    """A fixed list of tokens; a token's id is its index. The first four are SPECIALS."""

    tokens: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"tokens must start with {SPECIALS}, got {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("tokens must be distinct")
        # frozen: the token -> id table is set once, here, through object.__setattr__
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @staticmethod
    def build(texts: Iterable[str], min_count: int = 3) -> Vocabulary:
        """Every token seen at least `min_count` times in `texts`, sorted (as R2Gen sorts).

        Rare words become <unk>: R2Gen uses min_count 3 for IU X-Ray and 10 for MIMIC-CXR.
        """
        counts = Counter(token for text in texts for token in tokenize(text))
        kept = sorted(t for t, n in counts.items() if n >= min_count and t not in SPECIALS)
        return Vocabulary(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def id(self, token: str) -> int:
        """The id of `token`, or <unk>'s."""
        return self._index.get(token, self.unk_id)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """[<bos>, ids of the cleaned text..., <eos>], cut to at most `max_len` ids in all.

        The cut keeps <eos>, so a truncated report still ends; padding is the batcher's job.
        """
        ids = [self.id(token) for token in tokenize(text)]
        if max_len is not None:
            if max_len < 2:
                raise ValueError(f"max_len: {max_len} leaves no room for <bos> and <eos>")
            ids = ids[: max_len - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: stops at <eos>, skips <pad> and <bos>, keeps <unk> visible."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.tokens[i])
        return " ".join(words)

    def to_dict(self) -> dict:
        """JSON-able, to store inside a checkpoint beside the weights that index it."""
        return {"tokens": list(self.tokens)}

    @staticmethod
    def from_dict(data: dict) -> Vocabulary:
        return Vocabulary(tuple(data["tokens"]))
