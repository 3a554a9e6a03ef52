"""Turning the decoder's word probabilities into a report: greedy, beam search and sampling.

At step t the model gives log P(w | w_1..w_{t-1}, image) for every word w of the vocabulary; a
report is a sequence w_1..w_T ending in <eos>, with log-probability sum_t log P(w_t | w_<t).

* greedy:  w_t = argmax_w P(w | w_<t). One pass, but a locally best word can lead to a worse
  whole report.
* beam search (width K): keep the K best partial reports at every step, extend each by every
  word, keep the K best of the K x V candidates. Longer reports have more (negative) terms, so
  finished ones are ranked by the length-normalised score of Wu et al. (2016, GNMT):
      score = log P / lp(T),   lp(T) = ((5 + T) / 6) ** length_exponent
  (GNMT's alpha; 0 ranks by the raw log P).
  Optional trigram blocking forbids a word that would repeat a trigram already written. Off by
  default: a radiology impression often restates a finding word for word ("consolidation in the
  right lower zone" in both sections), and blocking would forbid exactly that.
  Optional sentence blocking (`block_sentences=Sentences.of(vocab)`) forbids ending a sentence
  that its section already has: "no pulmonary edema . ... no pulmonary edema ." Greedy
  decoding of the bundled model repeats a sentence in 45 of 400 unseen test reports (the
  decoder loses track of which of the many normal sentences it has written); a plain beam of 3
  in 5, a beam of 3 with blocking in none: the blocked hypothesis drops out and the next best
  one, which said something else, takes its place.
* sampling: w_t drawn from softmax(logits / temperature): temperature < 1 sharpens the
  distribution towards greedy, > 1 flattens it; for varied reports, not the most likely one.

Every function returns one `Decoded` per image, with the attention weights alpha_t (over the L
cells of the feature grid) that produced each word: the attention maps of the HTML report.

Where the data lives. On a GPU backend the decoder's state, the log-probabilities, the words
chosen and the bookkeeping of greedy decoding and sampling stay on the device for the whole
loop: a decoded word costs no copy to the host, and the results come back once, at the end.
Beam search keeps its hypotheses (lists of words) on the host and copies the 2K best
candidates of each step back (one small copy per step); see `_beam_one`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from minirad import functional as F
from minirad.autograd import Array, Tensor, array_module, like, no_grad, to_host
from minirad.backend import small_blas, to_device
from minirad.data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from minirad.models.report_model import Encoded, ReportModel
from minirad.report.review import SECTION_NAMES

NEG_INF = -np.inf
METHODS = ("greedy", "beam", "sample")


@dataclass
class Decoded:
    """One generated report: token ids (no <bos>/<eos>), alpha (len(tokens), L), the sum of the
    log-probabilities of the tokens (and of <eos> when finished), and whether <eos> was reached
    before the length limit."""

    tokens: list[int]
    attention: np.ndarray
    log_prob: float
    finished: bool


# Early stopping on a device. Greedy decoding and sampling may stop once every report of the
# batch has written <eos>, but "are all done?" asked of a mask on a GPU is a copy to the host
# that waits for every queued kernel: the host stops feeding the GPU until it has caught up.
# Asked every step, that is one sync per word; asked every CHECK_EVERY steps, one per
# CHECK_EVERY words, at the price of at most CHECK_EVERY - 1 steps run after the last report
# ended (their words are masked out, so the results are the same). 8 keeps both small: 11
# syncs for the 89 steps of the bundled model, and about 4 wasted steps of ~50 on average.
# On the host the mask is read for free, so there it is read every step.
CHECK_EVERY = 8


def _log_probs(logits: Tensor, temperature: float = 1.0) -> Array:
    """log softmax(logits / temperature) (B, V) in float64, with <pad> and <bos> made
    impossible; where the logits are (the host or a device)."""
    scaled = logits if temperature == 1.0 else logits * (1.0 / temperature)
    log_p = F.log_softmax(scaled, axis=-1).data.astype(np.float64)
    # A report never writes <pad> or <bos>. One column at a time: a list of columns would be
    # an index array, uploaded on every step.
    log_p[:, PAD_ID] = NEG_INF
    log_p[:, BOS_ID] = NEG_INF
    return log_p


def _check_max_len(max_len: int) -> None:
    if not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len: must be an integer >= 2 (<bos> and <eos>), got {max_len!r}")


def _steps_between_checks(xp) -> int:
    """How often the decoding loop reads its finished mask: see CHECK_EVERY."""
    return 1 if xp is np else CHECK_EVERY


# ---------------------------------------------------------------------------------------------
# Greedy and sampling: one word per image per step, the whole batch at once


def _decode_batch(
    model: ReportModel,
    encoded: Encoded,
    max_len: int,
    choose: Callable[[Array, int], Array],
    eos_id: int,
    bos_id: int,
) -> list[Decoded]:
    """Run the decoder on every image, `choose(log_p (B, V), t)`-ing each next word (B,).

    Every array of the loop lives where `encoded` does, so a step copies nothing: the words
    chosen feed the embedding on the device, <eos> is tracked by masks (no `if` on a value),
    and the finished mask is read only every CHECK_EVERY steps. The results cross to the host
    once, after the loop (`_to_decoded`).
    """
    xp = array_module(encoded.keys.data)
    B, L = encoded.keys.shape[:2]
    steps = max_len - 1  # room for all but <bos>
    tokens = xp.full((B, steps), -1, dtype=xp.int64)
    alphas = xp.zeros((B, steps, L))
    log_prob, done = xp.zeros(B), xp.zeros(B, dtype=bool)
    lengths = xp.full(B, steps, dtype=xp.int64)
    previous = xp.full(B, bos_id, dtype=xp.int64)
    every_row = xp.arange(B)
    check_every = _steps_between_checks(xp)
    ran = 0
    with no_grad():
        state = model.initial_state(encoded)
        for t in range(steps):
            logits, state, alpha = model.step(encoded, model.embed(previous), state)
            log_p = _log_probs(logits)
            chosen = choose(log_p, t)
            alphas[:, t] = alpha.data
            log_prob += xp.where(done, 0.0, log_p[every_row, chosen])
            newly_done = ~done & (chosen == eos_id)
            lengths = xp.where(newly_done, t, lengths)
            done |= newly_done
            tokens[:, t] = chosen
            previous = chosen
            ran = t + 1
            if ran % check_every == 0 and bool(done.all()):  # a sync on a device
                break
    return _to_decoded(tokens[:, :ran], alphas[:, :ran], log_prob, done, lengths)


def _to_decoded(tokens, alphas, log_prob, done, lengths) -> list[Decoded]:
    """One Decoded per row of the loop's arrays, each array copied to the host once."""
    tokens, alphas, log_prob, done, lengths = map(
        to_host, (tokens, alphas, log_prob, done, lengths)
    )
    return [
        Decoded(
            tokens=[int(i) for i in tokens[b, : lengths[b]]],
            attention=alphas[b, : lengths[b]],
            log_prob=float(log_prob[b]),
            finished=bool(done[b]),
        )
        for b in range(len(tokens))
    ]


def greedy(
    model: ReportModel,
    encoded: Encoded,
    max_len: int,
    eos_id: int = EOS_ID,
    bos_id: int = BOS_ID,
) -> list[Decoded]:
    """The most probable word at every step, for every image of `encoded`."""
    _check_max_len(max_len)
    return _decode_batch(
        model, encoded, max_len, lambda log_p, t: log_p.argmax(axis=1), eos_id, bos_id
    )


def sample(
    model: ReportModel,
    encoded: Encoded,
    max_len: int,
    temperature: float = 1.0,
    rng: np.random.Generator | int | None = None,
    eos_id: int = EOS_ID,
    bos_id: int = BOS_ID,
) -> list[Decoded]:
    """A word drawn from softmax(logits / temperature) at every step (seeded by `rng`).

    The returned log_prob is under the model itself (temperature 1), so reports drawn at
    different temperatures compare on one scale.

    The uniform numbers of all max_len - 1 steps are drawn at once, on the host (the seed's
    numbers, the same on every backend), and cross to the device in one copy: drawn step by
    step they would be one upload per word. Step t reads the same numbers as a draw per step
    would give (a generator's stream does not depend on how it is cut); a Generator passed as
    `rng` is left (max_len - 1) x B numbers further on.
    """
    _check_max_len(max_len)
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    rng = np.random.default_rng(rng)
    B = encoded.keys.shape[0]
    uniforms = like(rng.random((max_len - 1, B, 1)), encoded.keys.data)  # (T - 1, B, 1)

    def draw(log_p: Array, t: int) -> Array:
        xp = array_module(log_p)
        scaled = log_p / temperature  # log softmax(z / T) = z / T - logsumexp(z / T)
        scaled -= scaled.max(axis=1, keepdims=True)
        p = xp.exp(scaled)
        p /= p.sum(axis=1, keepdims=True)
        # Inverse-CDF sampling, one uniform number per row.
        return xp.minimum((p.cumsum(axis=1) < uniforms[t]).sum(axis=1), p.shape[1] - 1)

    return _decode_batch(model, encoded, max_len, draw, eos_id, bos_id)


# ---------------------------------------------------------------------------------------------
# Beam search: one image at a time, its K hypotheses as a batch


@dataclass(frozen=True)
class Sentences:
    """The token ids that end a sentence ("." ) and start a section ("findings", ...): what
    sentence blocking needs to cut a report into sections and sentences."""

    period_id: int
    section_ids: frozenset[int]

    @staticmethod
    def of(vocab: Vocabulary, sections: tuple[str, ...] = SECTION_NAMES) -> Sentences:
        if "." not in vocab.tokens:
            raise ValueError("vocab: has no '.' token, so sentences cannot be told apart")
        ids = frozenset(vocab.id(name) for name in sections if name in vocab.tokens)
        return Sentences(vocab.id("."), ids)


def length_penalty(length: int, exponent: float) -> float:
    """GNMT's lp(T) = ((5 + T) / 6) ** exponent: 1 for T = 1, growing slowly with T."""
    return ((5.0 + length) / 6.0) ** exponent


@dataclass(frozen=True)
class BeamSettings:
    """How beam search extends, blocks and ranks hypotheses (see `beam_search`)."""

    width: int = 3
    length_exponent: float = 0.6
    block_trigrams: bool = False
    block_sentences: Sentences | None = None
    eos_id: int = EOS_ID
    bos_id: int = BOS_ID

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width: a beam holds at least 1 hypothesis, got {self.width!r}")
        if self.length_exponent < 0:
            raise ValueError(
                f"length_exponent: the length penalty's exponent must be >= 0, "
                f"got {self.length_exponent}"
            )

    def score(self, h: _Hypothesis, length: int) -> float:
        """The length-normalised log P / lp(length) that ranks hypotheses."""
        return h.log_prob / length_penalty(length, self.length_exponent)


@dataclass
class _Hypothesis:
    """A live (or finished) partial report of the beam, on the host: its words, the attention
    row of each word (arrays where the decoder runs: views, not copies), its log P, and its
    row in the decoder state of the previous step."""

    tokens: list[int]
    alphas: list[Array]
    log_prob: float
    row: int

    def trigrams(self) -> set[tuple[int, int, int]]:
        t = self.tokens
        return {(t[i], t[i + 1], t[i + 2]) for i in range(len(t) - 2)}

    def open_sentence_is_a_repeat(self, sentences: Sentences) -> bool:
        """Whether the unfinished last sentence equals a finished one of the same section."""
        finished: set[tuple[int, ...]] = set()
        current: list[int] = []
        for token in self.tokens:
            if token in sentences.section_ids:  # a new section: its own sentences
                finished, current = set(), []
            elif token == sentences.period_id:
                finished.add(tuple(current))
                current = []
            else:
                current.append(token)
        return bool(current) and tuple(current) in finished


@dataclass
class _LiveRows:
    """What the decoder needs of the R live hypotheses, where it runs: each one's row in the
    previous step's state (R,), its last word (R,) and its log P (R,) in float64."""

    rows: Array
    previous: Array
    log_prob: Array


@dataclass
class _Extensions:
    """The best 2K of the R x V candidates of a step, best first (K = the width): the log P
    of hypothesis `row` extended by `word`, and what becomes of it: `kept` as a live
    hypothesis, or it `ends` the report (its word is <eos>). Each (2K,)."""

    log_prob: Array
    row: Array
    word: Array
    kept: Array
    ends: Array

    def to_host(self) -> _Extensions:
        """The same on the host, in one copy of a (5, 2K) float64 array rather than five
        (row and word ids are small integers, exact in a float64)."""
        xp = array_module(self.log_prob)
        fields = (self.log_prob, self.row, self.word, self.kept, self.ends)
        log_prob, row, word, kept, ends = to_host(xp.stack([f.astype(xp.float64) for f in fields]))
        return _Extensions(
            log_prob, row.astype(np.int64), word.astype(np.int64), kept > 0, ends > 0
        )

    def kept_rows(self, count: int) -> _LiveRows:
        """The `count` kept extensions as the next step's live rows, without leaving the
        device: a stable sort on "not kept" puts them first, in their order."""
        xp = array_module(self.kept)
        first = xp.argsort((~self.kept).astype(xp.int8), kind="stable")[:count]
        return _LiveRows(self.row[first], self.word[first], self.log_prob[first])


def beam_search(
    model: ReportModel,
    encoded: Encoded,
    max_len: int,
    width: int = 3,
    length_exponent: float = 0.6,
    block_trigrams: bool = False,
    block_sentences: Sentences | None = None,
    eos_id: int = EOS_ID,
    bos_id: int = BOS_ID,
) -> list[Decoded]:
    """The best report by length-normalised log-probability among the beam's, per image.

    length_exponent: of the length penalty lp(T) (GNMT's alpha; see the module docstring).
    """
    _check_max_len(max_len)
    settings = BeamSettings(
        width=width,
        length_exponent=length_exponent,
        block_trigrams=block_trigrams,
        block_sentences=block_sentences,
        eos_id=eos_id,
        bos_id=bos_id,
    )
    xp = array_module(encoded.keys.data)
    B = encoded.keys.shape[0]
    # xp.full makes the row index where `encoded` is (np.array([b]) would be an upload).
    return [_beam_one(model, encoded.select(xp.full(1, b)), max_len, settings) for b in range(B)]


def _beam_one(
    model: ReportModel, encoded: Encoded, max_len: int, settings: BeamSettings
) -> Decoded:
    """Beam search for one image (`encoded` holds one row).

    What lives where. The decoder, the log-probabilities, the sort of the R x V candidates and
    the rule that picks the K to keep (`_best_extensions`) run where `encoded` is, and so do
    the live rows the next step reads (`_LiveRows`). The hypotheses' word lists, the finished
    reports and the stopping test stay on the host, in Python: the blocking rules read word
    histories, and how many hypotheses live on (R, the shape of the next step) and whether
    to stop are decided on values. Per step that costs one copy back, of the 2K best
    candidates (5 x 2K numbers), and one upload when a blocking rule forbids a word; the
    attention of the best report comes back once, at the end. (A beam wholly on the device
    would keep K rows always, padded with log P = -inf, and test the stop every few steps, as
    greedy decoding does: a larger program for one small copy per word.)
    """
    xp = array_module(encoded.keys.data)
    live = [_Hypothesis([], [], 0.0, 0)]
    beam = _LiveRows(
        rows=xp.zeros(1, dtype=xp.int64),
        previous=xp.full(1, settings.bos_id, dtype=xp.int64),
        log_prob=xp.zeros(1),
    )
    finished: list[tuple[float, _Hypothesis]] = []
    with no_grad():
        state = model.initial_state(encoded)
        for _ in range(max_len - 1):
            state = _select_state(state, beam.rows)
            image = encoded.select(xp.zeros(len(live), dtype=xp.int64))  # once per hypothesis
            logits, state, alpha_t = model.step(image, model.embed(beam.previous), state)
            log_p = _log_probs(logits)
            _forbid(log_p, _blocked_words(live, settings))
            best = _best_extensions(beam.log_prob[:, None] + log_p, settings)
            live = _extend(live, best.to_host(), alpha_t.data, settings, finished)
            if not live or _cannot_improve(live, finished, settings, max_len):
                break
            beam = best.kept_rows(len(live))
    if not finished:  # the length limit came first: rank the unfinished ones the same way
        finished = [(settings.score(h, len(h.tokens)), h) for h in live]
        return _as_decoded(max(finished, key=lambda f: f[0])[1], done=False)
    return _as_decoded(max(finished, key=lambda f: f[0])[1], done=True)


def _select_state(state, rows: Array):
    """The decoder state of the hypotheses kept: rows of h (and c), repeats allowed."""
    if isinstance(state, tuple):
        return tuple(Tensor(s.data[rows]) for s in state)
    return Tensor(state.data[rows])


def _blocked_words(live: list[_Hypothesis], settings: BeamSettings) -> list[tuple[int, int]]:
    """The (row, word) pairs the blocking rules forbid this step, read from the word lists."""
    pairs = []
    if settings.block_trigrams:
        pairs += _repeated_trigram_ends(live)
    if settings.block_sentences is not None:
        pairs += _repeated_sentence_ends(live, settings.block_sentences, settings.eos_id)
    return pairs


def _repeated_trigram_ends(live: list[_Hypothesis]) -> list[tuple[int, int]]:
    """Each word that would complete a trigram the hypothesis has."""
    pairs = []
    for r, h in enumerate(live):
        if len(h.tokens) < 2:
            continue
        last_two = tuple(h.tokens[-2:])
        pairs += [(r, c) for a, b, c in h.trigrams() if (a, b) == last_two]
    return pairs


def _repeated_sentence_ends(
    live: list[_Hypothesis], sentences: Sentences, eos_id: int
) -> list[tuple[int, int]]:
    """Whatever would end a sentence its section already has: the period, and also <eos> or a
    section name, which would end it without one."""
    closing = [sentences.period_id, eos_id, *sentences.section_ids]
    return [
        (r, word)
        for r, h in enumerate(live)
        if h.open_sentence_is_a_repeat(sentences)
        for word in closing
    ]


def _forbid(log_p: Array, pairs: list[tuple[int, int]]) -> None:
    """log_p[r, w] = -inf for each (r, w) of `pairs`: one upload of them on a device, none
    when there are none (most steps)."""
    if pairs:
        rows_and_words = like(np.array(pairs).T, log_p)  # (2, n)
        log_p[rows_and_words[0], rows_and_words[1]] = NEG_INF


def _best_extensions(candidates: Array, settings: BeamSettings) -> _Extensions:
    """The 2K best of candidates (R, V) (log P of each live hypothesis extended by each word)
    and what becomes of each, where the candidates are.

    2K are enough to keep K live ones: a hypothesis has one <eos> candidate, so at most R <= K
    of them end a report. The rule is that of walking the list in order: a candidate counts
    while fewer than K kept ones precede it and its log P is finite (a blocked or impossible
    word has -inf, and those sort last); if it counts, it ends the report when its word is
    <eos>, else it is kept.
    """
    xp = array_module(candidates)
    V = candidates.shape[1]
    flat = candidates.ravel()
    order = xp.argsort(-flat, kind="stable")[: 2 * settings.width]  # ties: the lower index
    log_prob = flat[order]
    row, word = order // V, order % V
    possible = xp.isfinite(log_prob)
    grows = possible & (word != settings.eos_id)
    kept_before = xp.cumsum(grows) - grows  # kept candidates ahead of each one
    counts = kept_before < settings.width
    return _Extensions(log_prob, row, word, kept=grows & counts, ends=possible & ~grows & counts)


def _extend(
    live: list[_Hypothesis],
    best: _Extensions,
    alphas: Array,
    settings: BeamSettings,
    finished: list[tuple[float, _Hypothesis]],
) -> list[_Hypothesis]:
    """The kept extensions as the new live hypotheses; those that end move to `finished`
    (with their score).

    best: `_best_extensions` on the host; alphas (R, L): the attention weights of the step,
    where the decoder runs (each hypothesis keeps a view of its row).
    """
    kept = []
    for log_prob, r, word, keep, ends in zip(
        best.log_prob, best.row, best.word, best.kept, best.ends, strict=True
    ):
        parent = live[r]
        if ends:
            h = _Hypothesis(parent.tokens, parent.alphas, float(log_prob), int(r))
            finished.append((settings.score(h, len(h.tokens) + 1), h))  # + 1: <eos>
        elif keep:
            alpha = alphas[int(r)]
            h = _Hypothesis(
                parent.tokens + [int(word)], parent.alphas + [alpha], float(log_prob), int(r)
            )
            kept.append(h)
    return kept


def _cannot_improve(
    live: list[_Hypothesis],
    finished: list[tuple[float, _Hypothesis]],
    settings: BeamSettings,
    max_len: int,
) -> bool:
    """Stop once `width` reports are finished and no live one can beat the best of them.

    A live hypothesis's log P only falls as it grows, and lp grows with length, so its best
    possible final score is log P / lp(max_len) (log P < 0, divided by the largest lp).
    """
    if len(finished) < settings.width:
        return False
    best_finished = max(score for score, _ in finished)
    best_possible = max(settings.score(h, max_len) for h in live)
    return best_possible < best_finished


def _as_decoded(h: _Hypothesis, done: bool) -> Decoded:
    """The hypothesis as a Decoded; its attention rows cross to the host in one copy."""
    if not h.alphas:
        return Decoded(list(h.tokens), np.zeros((0, 0)), h.log_prob, done)
    attention = to_host(array_module(h.alphas[0]).stack(h.alphas))
    return Decoded(list(h.tokens), attention, h.log_prob, done)


# ---------------------------------------------------------------------------------------------


def decode(
    model: ReportModel,
    encoded: Encoded,
    method: str = "greedy",
    max_len: int | None = None,
    width: int = 3,
    length_exponent: float = 0.6,
    block_trigrams: bool = False,
    block_sentences: Sentences | None = None,
    temperature: float = 1.0,
    rng: np.random.Generator | int | None = None,
) -> list[Decoded]:
    """Dispatch to greedy / beam_search / sample; max_len defaults to the model's."""
    max_len = model.config.max_len if max_len is None else max_len
    if method == "greedy":
        return greedy(model, encoded, max_len)
    if method == "beam":
        return beam_search(
            model,
            encoded,
            max_len,
            width=width,
            length_exponent=length_exponent,
            block_trigrams=block_trigrams,
            block_sentences=block_sentences,
        )
    if method == "sample":
        return sample(model, encoded, max_len, temperature, rng)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def generate(
    model: ReportModel,
    images: np.ndarray,
    method: str = "greedy",
    batch_size: int = 64,
    **options,
) -> list[Decoded]:
    """Reports for images (N, 1, S, S) in [0, 1], `batch_size` images per encoder pass.

    `options` go to `decode` (width, length_exponent, block_trigrams, block_sentences,
    temperature, rng, max_len). The model is put in eval mode (no dropout) and no graph is recorded.

    images may be on the host: each batch crosses to the active backend's device in one copy
    (minirad.backend.to_device), where the model must be (Module.to; load_report_model puts
    it there). The reports come back as host data (see `decode`'s methods for their copies).
    """
    model.eval()
    results: list[Decoded] = []
    with no_grad(), small_blas():  # small matrices: one BLAS thread (minirad.backend)
        for start in range(0, len(images), batch_size):
            batch = to_device(images[start : start + batch_size])  # one copy per batch
            encoded = model.encode(Tensor(batch))
            results += decode(model, encoded, method, **options)
    return results
