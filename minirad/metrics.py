"""How good is a generated report: word overlap (BLEU, ROUGE-L, CIDEr) and findings (P/R/F1).

    nlg_scores(references, hypotheses)   # {"BLEU-1": .., "BLEU-4": .., "ROUGE-L": .., "CIDEr": ..}
    clinical_scores(labels_from_reports(references), labels_from_reports(hypotheses))
    distinct_reports(hypotheses)         # how many different reports the model wrote
    expected_calibration_error(p, y)     # how far P(finding) is from how often it is true

Word-overlap metrics follow pycocoevalcap 1.2 (the COCO caption evaluation code that R2Gen and
most report-generation papers use) formula for formula, smoothing constants and quirks included,
so that a number here can be set beside a published table. tests/test_metrics.py checks them
against pycocoevalcap's Bleu(4), Rouge() and Cider() to 1e-6.

Tokens. pycocoevalcap's scorers split their strings on whitespace; the text they are given has
already been tokenised (by its PTBTokenizer, or in R2Gen by vocab cleaning). Here the strings are
split with `str.split()`: pass text cleaned by `minirad.data.vocab.clean_report` (the decoder's
output already is) to get R2Gen's numbers. Cleaning is not done here because it is not the
identity on every string (it drops punctuation and list numbers), and the scores must be those of
the strings given. One reference per hypothesis, as in report generation.

A clinical metric asks instead whether the generated report states the right findings: the
labeler (minirad.data.labeler, after CheXpert) reads the findings out of both reports, and the
positive findings are compared as in a multi-label classifier.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from minirad.data.findings import FINDINGS, POSITIVE
from minirad.data.labeler import label_report

MAX_N = 4  # BLEU-1..4 and CIDEr's n-grams 1..4
BLEU_TINY, BLEU_SMALL = 1e-15, 1e-9  # pycocoevalcap's smoothing: (correct+tiny)/(guess+small)
ROUGE_BETA = 1.2  # recall weighs beta^2 = 1.44 times precision
CIDER_SIGMA = 6.0  # width of CIDEr-D's gaussian length penalty


# ---------------------------------------------------------------------------------------------
# Input checks


def _check_pair(
    first: Sequence, second: Sequence, names: tuple[str, str], kind: type | tuple[type, ...]
) -> None:
    """Both arguments are lists of `kind` of one (non-zero) length; the message names which not."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    kind_name = " or ".join(k.__name__ for k in kinds)
    for name, value in zip(names, (first, second), strict=True):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, kind):
                raise ValueError(f"{name}[{i}]: expected {kind_name}, got {type(item).__name__}")
    if len(first) != len(second):
        raise ValueError(
            f"{names[1]}: {len(second)} given for {len(first)} {names[0]}; "
            f"{names[0]} and {names[1]} must have one entry per study"
        )
    if len(first) == 0:
        raise ValueError(f"{names[0]}: empty; a score needs at least one study")


# ---------------------------------------------------------------------------------------------
# n-grams


def ngram_counts(tokens: list[str], n: int = MAX_N) -> Counter:
    """Counts of every k-gram, k = 1..n, keyed by the tuple of its tokens.

    A sentence of L tokens has max(0, L - k + 1) k-grams.
    """
    return Counter(
        tuple(tokens[i : i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1)
    )


# ---------------------------------------------------------------------------------------------
# BLEU (Papineni et al., 2002), corpus level, as pycocoevalcap's BleuScorer(option="closest")


def bleu(references: list[list[str]], hypotheses: list[list[str]], n: int = MAX_N) -> list[float]:
    """Corpus BLEU-1..n of token lists (one reference each). Returns [BLEU-1, ..., BLEU-n].

    Over the corpus of S sentences (c_s: the hypothesis's k-gram counts, r_s: the reference's),

        correct_k = sum_s sum_g min(c_s[g], r_s[g])       (clipped matches, g a k-gram)
        guess_k   = sum_s max(0, len(hyp_s) - k + 1)      (k-grams in the hypotheses)
        p_k       = (correct_k + 1e-15) / (guess_k + 1e-9)
        BLEU-N    = BP * (p_1 * ... * p_N) ** (1 / N)     (geometric mean of p_1..p_N)

    with the brevity penalty on the corpus lengths c = sum len(hyp_s), r = sum len(ref_s)
    (with one reference, its length is the "closest" one):

        ratio = (c + 1e-15) / (r + 1e-9),  BP = exp(1 - 1 / ratio) if ratio < 1 else 1.

    The sums over the corpus come before the ratio: corpus BLEU is not the mean of sentence BLEUs.
    The constants keep an empty match from dividing by zero (p_k ~ 1e-6 when guess_k > 0 and
    nothing matches, which drives BLEU to ~0); they are pycocoevalcap's.
    """
    correct, guess = [0] * n, [0] * n
    hyp_len = ref_len = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_counts, hyp_counts = ngram_counts(ref, n), ngram_counts(hyp, n)
        for gram, count in hyp_counts.items():
            correct[len(gram) - 1] += min(count, ref_counts.get(gram, 0))
        for k in range(1, n + 1):
            guess[k - 1] += max(0, len(hyp) - k + 1)
        hyp_len += len(hyp)
        ref_len += len(ref)

    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (hyp_len + BLEU_TINY) / (ref_len + BLEU_SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# ---------------------------------------------------------------------------------------------
# ROUGE-L (Lin, 2004), per sentence and averaged, as pycocoevalcap's Rouge


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming).

    L[i][j] = L[i-1][j-1] + 1 if a[i-1] == b[j-1] else max(L[i-1][j], L[i][j-1]);
    O(len(a) * len(b)) time, one row of O(len(b)) memory.
    """
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0  # L[i-1][j-1]
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(reference: list[str], hypothesis: list[str], beta: float = ROUGE_BETA) -> float:
    """ROUGE-L F-measure of one hypothesis against one reference.

        P = LCS / len(hyp),  R = LCS / len(ref),
        F = (1 + beta^2) P R / (R + beta^2 P)   (0 when P or R is 0).

    Empty strings: pycocoevalcap splits on " ", so "" is one empty token; two empty reports then
    score 1 and an empty against a non-empty one 0. The same is defined here.
    """
    if not reference or not hypothesis:
        return 1.0 if not reference and not hypothesis else 0.0
    lcs = lcs_length(reference, hypothesis)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


# ---------------------------------------------------------------------------------------------
# CIDEr-D (Vedantam et al., 2015), as pycocoevalcap's CiderScorer


def cider_d(
    references: list[list[str]],
    hypotheses: list[list[str]],
    n: int = MAX_N,
    sigma: float = CIDER_SIGMA,
) -> float:
    """Corpus CIDEr-D of token lists (one reference each): the mean of the sentence scores.

    Document frequencies come from the references of *this* corpus of S studies:
    df(g) = number of references that contain the n-gram g. A sentence's k-gram vector has,
    for each k-gram g in it with count tf(g),

        w(g) = tf(g) * (log S - log max(1, df(g)))      (tf-idf; unseen g weigh log S)

    and the sentence score sums a clipped cosine over k = 1..n:

        sim_k   = sum_g min(w_hyp(g), w_ref(g)) * w_ref(g) / (|w_hyp_k| |w_ref_k|)
                  (the division only when both norms are non-zero)
        penalty = exp(-(l_hyp - l_ref)^2 / (2 sigma^2))
        CIDEr-D = 10 * mean_k(sim_k * penalty)

    The lengths l in the penalty are pycocoevalcap's: its code counts the tokens of the
    *bigrams* (`if n == 1` on a zero-based n), so l = number of bigrams = max(0, tokens - 1).
    The corpus score is the mean over the S sentences. With S = 1 every weight is 0, and so is
    CIDEr: idf needs a corpus.
    """
    ref_counts = [ngram_counts(ref, n) for ref in references]
    hyp_counts = [ngram_counts(hyp, n) for hyp in hypotheses]
    document_frequency: Counter = Counter()
    for counts in ref_counts:
        document_frequency.update(counts.keys())
    log_s = math.log(float(len(references)))

    def tfidf(counts: Counter) -> tuple[list[dict], list[float], int]:
        """k-gram weights (one dict per k), their L2 norms, and the number of bigrams."""
        vec: list[dict] = [{} for _ in range(n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (log_s - math.log(max(1.0, document_frequency[gram])))
        norms = [math.sqrt(sum(w * w for w in v.values())) for v in vec]
        n_bigrams = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, norms, n_bigrams

    scores = []
    for r_counts, h_counts in zip(ref_counts, hyp_counts, strict=True):
        vec_h, norm_h, len_h = tfidf(h_counts)
        vec_r, norm_r, len_r = tfidf(r_counts)
        penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
        total = 0.0
        for k in range(n):
            val = sum(
                min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items()
            )
            if norm_h[k] != 0 and norm_r[k] != 0:
                val /= norm_h[k] * norm_r[k]
            total += val * penalty
        scores.append(10.0 * total / n)
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------------------
# The word-overlap table


def nlg_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr(-D) of S hypotheses against their S references.

    references, hypotheses: lists of S strings, study s's reference and generated report,
    tokenised by `str.split()` (see the module docstring). Returns
    {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"} -> float, on pycocoevalcap's
    scales: BLEU and ROUGE-L in [0, 1], CIDEr x10 (a hypothesis identical to its reference
    scores 10; less if it has fewer than 4 tokens, or if all its k-grams of one order occur in
    every reference and so weigh 0).
    ROUGE-L is the mean over sentences; BLEU and CIDEr are corpus scores as defined above.
    """
    _check_pair(references, hypotheses, ("references", "hypotheses"), str)
    refs = [r.split() for r in references]
    hyps = [h.split() for h in hypotheses]
    scores = {f"BLEU-{k}": s for k, s in enumerate(bleu(refs, hyps), start=1)}
    scores["ROUGE-L"] = sum(rouge_l(r, h) for r, h in zip(refs, hyps, strict=True)) / len(refs)
    scores["CIDEr"] = cider_d(refs, hyps)
    return scores


# ---------------------------------------------------------------------------------------------
# Clinical efficacy: findings as a multi-label classification


def labels_from_reports(texts: list[str]) -> list[set[str]]:
    """The positive findings of each report, as the labeler reads them (label 1 = POSITIVE).

    Negative (0), uncertain (-1) and unmentioned (None) findings are all "not positive", the
    usual convention of CheXpert-based clinical metrics.
    """
    if isinstance(texts, str):
        raise ValueError("texts: expected a list of reports, got one str")
    return [{name for name, label in label_report(t).items() if label == POSITIVE} for t in texts]


def _safe_div(num: float, den: float) -> float:
    """num / den, with 0 / 0 = 0 (the convention of every ratio in clinical_scores)."""
    return num / den if den else 0.0


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2PR/(P+R); each 0 where 0/0."""
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _safe_div(2 * precision * recall, precision + recall),
    }


def clinical_scores(true_labels: list[set[str]], predicted: list[set[str]]) -> dict[str, dict]:
    """Precision, recall, F1 and support of each finding, and their micro and macro averages.

    true_labels, predicted: lists of S sets of names from FINDINGS (the positive findings of the
    reference and of the generated report of each study). For finding f over the S studies:

        tp_f = #{s: f in true_s and f in pred_s}, fp_f = #{s: f not in true_s, f in pred_s},
        fn_f = #{s: f in true_s, f not in pred_s},  support_f = tp_f + fn_f,
        P_f = tp_f / (tp_f + fp_f),  R_f = tp_f / (tp_f + fn_f),  F1_f = 2 P_f R_f / (P_f + R_f).

    Every 0/0 is defined as 0 (scikit-learn's zero_division=0): a finding never predicted has
    precision 0, one with no support recall 0. "micro" pools tp, fp, fn over all findings
    before dividing; "macro" is the unweighted mean of P_f, R_f and F1_f over all of FINDINGS,
    findings with no support included (macro-F1 is the mean of the F1_f, not the F1 of the mean
    P and R). Support of "micro" and "macro": the total number of true positive labels.

    Returns {finding: {"precision", "recall", "f1", "support"}, ..., "micro": {...},
    "macro": {...}}.
    """
    _check_pair(true_labels, predicted, ("true_labels", "predicted"), (set, frozenset))
    for name, sets in (("true_labels", true_labels), ("predicted", predicted)):
        for i, labels in enumerate(sets):
            unknown = set(labels) - set(FINDINGS)
            if unknown:
                raise ValueError(f"{name}[{i}]: {sorted(unknown)} not in FINDINGS {FINDINGS}")

    scores: dict[str, dict] = {}
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for f in FINDINGS:
        tp = sum(f in t and f in p for t, p in zip(true_labels, predicted, strict=True))
        fp = sum(f not in t and f in p for t, p in zip(true_labels, predicted, strict=True))
        fn = sum(f in t and f not in p for t, p in zip(true_labels, predicted, strict=True))
        scores[f] = {**_prf(tp, fp, fn), "support": tp + fn}
        totals["tp"] += tp
        totals["fp"] += fp
        totals["fn"] += fn
    support = totals["tp"] + totals["fn"]
    scores["micro"] = {**_prf(totals["tp"], totals["fp"], totals["fn"]), "support": support}
    scores["macro"] = {
        key: sum(scores[f][key] for f in FINDINGS) / len(FINDINGS)
        for key in ("precision", "recall", "f1")
    }
    scores["macro"]["support"] = support
    return scores


def distinct_reports(texts: list[str]) -> int:
    """How many different reports: distinct strings after collapsing runs of whitespace.

    A generator that writes the same normal report for every image scores 1 here, however high
    its BLEU; the count is a quick check for that mode collapse.
    """
    if isinstance(texts, str):
        raise ValueError("texts: expected a list of reports, got one str")
    return len({" ".join(t.split()) for t in texts})


# ---------------------------------------------------------------------------------------------
# Calibration: does P(finding) = 0.8 come true 8 times in 10?

CALIBRATION_BINS = 10


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """The reliability diagram's data: every (study, finding) pair is one prediction.

    probabilities, labels: (N, K) (or any shape, the same for both), P in [0, 1], labels in
    {0, 1}. The predictions fall into `bins` equal-width bins of P (P = 1 in the last); per
    non-empty bin b: count n_b, mean predicted P ("confidence", conf_b) and the fraction of
    true labels ("frequency", freq_b). A calibrated head has freq_b = conf_b in every bin.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(
            f"probabilities, labels: same non-empty shape needed, got {p.shape}, {y.shape}"
        )
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("probabilities: every value must be a finite number in [0, 1]")
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "count": int((which == b).sum()),
            "confidence": float(p[which == b].mean()),
            "frequency": float(y[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """ECE = sum over bins of (n_b / n) |freq_b - conf_b| (Naeini et al., 2015; Guo et al.,
    2017), on the bins of `reliability_bins`; 0 for a perfectly calibrated head."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(row["count"] for row in table)
    return sum(row["count"] / total * abs(row["frequency"] - row["confidence"]) for row in table)
