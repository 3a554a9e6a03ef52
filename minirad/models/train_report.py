"""Train the report generator: `minirad train --data DIR --out MODEL.npz`.

    result = train_report_model("phantoms/", "model.npz", TrainConfig(epochs=12, seed=0))

One epoch = one pass over a fresh permutation of the training studies in mini-batches. Per batch:

    word_logits, finding_logits = model(images, tokens, findings)   teacher forcing (*)
    loss = CE(word_logits, tokens[:, 1:]; ignore <pad>) + lambda * BCE(finding_logits, labels)
    loss.backward();  clip the global gradient norm;  Adam step

with the learning rate annealed along a half cosine over the epochs. (*) The decoder reads the
true previous words and the true findings; at inference, its own words and the finding head's
decisions (see minirad.models.report_model).

After each epoch the model writes (greedy) reports for the validation studies, which are scored
by the clinical micro-F1 of the findings the labeler reads from them and by BLEU-4; the best
epoch (F1 first, then BLEU-4) is kept in OUT.

Files written next to OUT (each atomically: write to a temporary name, then rename):

    OUT                  the best model so far (weights + vocabulary + preprocessing + scores)
    OUT.last.npz         the end of the last finished epoch, with the optimizer's moments and the
                         random generators' states: `--resume` continues from it exactly
    OUT.curves.png       loss and validation scores per epoch

Ctrl-C stops at once: OUT and OUT.last.npz stay as the last finished epoch left them (if no epoch
has finished yet, the current weights are written to OUT so that there is a usable model).
A loss that is not finite (NaN or inf: a learning rate far too high) stops training with
TrainingDivergedError at the first time the losses are read (every SHOW_EVERY batches and at
each epoch's end, reads the progress bar makes anyway): OUT and OUT.last.npz keep the last good
epoch, and nothing of the diverged one is written.

`resume=True` continues OUT.last.npz on the same data; a setting that shapes the model or the
batches must be the same, one that does not (epochs, lr, ...) may change, and each resume is
said in the log and kept in the checkpoint's info["resumed"].
The same data and seed give the same weights: the initial weights, the batch order and the
dropout masks come from generators seeded by `seed`.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minirad import functional as F
from minirad.autograd import Tensor
from minirad.backend import small_blas, to_device
from minirad.data.datasets import Record
from minirad.data.vocab import Vocabulary
from minirad.errors import ArgumentError
from minirad.files import write_atomically
from minirad.metrics import clinical_scores, labels_from_reports, nlg_scores
from minirad.models.report_checkpoint import (
    load_report_model,
    save_report_model,
    store_review_statistics,
)
from minirad.models.report_data import ReportArrays, read_records, split
from minirad.models.report_model import ReportModel, ReportModelConfig, report_loss
from minirad.models.running import SHOW_EVERY, RunningSums
from minirad.optim import Adam, CosineAnnealingLR, clip_grad_norm_
from minirad.report.decoding import generate


@dataclass
class TrainConfig:
    """The knobs of a training run (all stored in the checkpoint's info)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    cell: str = "lstm"
    image_size: int = 128
    finding_weight: float = 1.0  # lambda: the weight of the finding loss
    # Finding analysis first: in the first epochs only the encoder and the finding head train.
    # They cost a third of a full epoch, and the decoder then starts from features that
    # already tell the findings apart instead of spending its first epochs on noise.
    warmup_epochs: int = 3
    # Off: the word loss trains the decoder only, the finding loss the encoder and the head
    # (see ReportModel.forward). On: Show-Attend-Tell's joint training of everything by both.
    encoder_learns_from_words: bool = False
    max_grad_norm: float = 5.0
    min_count: int = 3  # a word seen fewer times in training becomes <unk>
    max_len: int = 90
    val_limit: int = 300  # validate on at most this many studies (decoding is the slow part)

    def __post_init__(self) -> None:
        if not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ArgumentError(
                "warmup_epochs", f"must be an integer >= 0, got {self.warmup_epochs!r}"
            )
        for name in ("epochs", "batch_size", "image_size", "min_count", "max_len", "val_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ArgumentError(name, f"must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ArgumentError("lr", f"must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.finding_weight) and self.finding_weight >= 0):
            raise ArgumentError(
                "finding_weight", f"must be a finite number >= 0, got {self.finding_weight}"
            )


class TrainingDivergedError(ValueError):
    """A training loss became NaN or inf; the message says where and what was kept."""


@dataclass
class History:
    """One entry per finished epoch."""

    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    word_loss: list[float] = field(default_factory=list)
    finding_loss: list[float] = field(default_factory=list)
    val_f1: list[float] = field(default_factory=list)
    val_bleu4: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def best_epoch(self) -> int | None:
        """The epoch with the highest (val F1, val BLEU-4); None before the first validation."""
        scored = [i for i, f1 in enumerate(self.val_f1) if not math.isnan(f1)]
        if not scored:
            return None
        best = max(scored, key=lambda i: (self.val_f1[i], self.val_bleu4[i]))
        return self.epoch[best]


@dataclass
class TrainingState:
    """What a run carries from one epoch to the next; OUT.last.npz holds all of it.

    rngs: "init" draws the initial weights and then the dropout masks, "shuffle" the batch order.
    """

    model: ReportModel
    vocab: Vocabulary
    optimizer: Adam
    history: History
    rngs: dict[str, np.random.Generator]
    resumed: list[dict] = field(default_factory=list)  # one entry per resume: when, what changed


@dataclass
class TrainResult:
    model: ReportModel
    vocab: Vocabulary
    history: History
    interrupted: bool


def last_path(out: Path) -> Path:
    return out.with_name(out.name + ".last.npz")


def curves_path(out: Path) -> Path:
    return out.with_name(out.name + ".curves.png")


# ---------------------------------------------------------------------------------------------


def train_report_model(
    data: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on the dataset folder `data`, keeping the best model in `out` (see module doc)."""
    config = config or TrainConfig()
    out = Path(out)
    if out.suffix != ".npz":
        raise ArgumentError("out", f"{out} must end in .npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    records = read_records(data)
    train_records, val_records = split(records, "train"), split(records, "val")
    val_records = val_records[: config.val_limit]

    state = _resume(out, config, data, log) if resume else _fresh(train_records, config)
    model, vocab, history = state.model, state.vocab, state.history
    log(
        f"{len(train_records)} training and {len(val_records)} validation studies, "
        f"vocabulary of {len(vocab)} tokens, {sum(p.data.size for p in model.parameters())} "
        f"parameters"
    )
    size, max_len = model.config.image_size, model.config.max_len
    train = ReportArrays.from_records(train_records, vocab, size, max_len, "reading train")
    val = ReportArrays.from_records(val_records, vocab, size, max_len, "reading val")
    schedule = CosineAnnealingLR(state.optimizer, T_max=config.epochs)
    schedule.last_epoch = len(history.epoch)
    state.optimizer.lr = schedule.lr_at(schedule.last_epoch)
    info = {"data": str(data), "train": asdict(config), "resumed": state.resumed}

    interrupted = False
    try:
        with small_blas():  # small matrices: one BLAS thread (see minirad.backend.small_blas)
            for epoch in range(len(history.epoch) + 1, config.epochs + 1):
                _run_epoch(state, epoch, train, val, config)
                schedule.step()
                _save_epoch(state, out, info)
                log(_epoch_line(history, config.epochs, epoch <= config.warmup_epochs))
    except TrainingDivergedError as error:
        kept = (
            f"{out} and {last_path(out)} keep epoch {history.epoch[-1]}"
            if history.epoch
            else "no checkpoint was written"
        )
        raise TrainingDivergedError(f"{error}; {kept}") from None
    except KeyboardInterrupt:
        interrupted = True
        if not out.exists():  # no finished epoch: leave the weights there are
            save_report_model(out, model, vocab, {**info, "interrupted": True})
        log(f"interrupted: {out} holds epoch {history.best_epoch() or 'partial 1'}")
    best, vocab, _ = load_report_model(out)
    if not interrupted:  # the review's familiarity score and temperatures, for the kept epoch
        store_review_statistics(out, best, train.images, val.images, val.findings)
    return TrainResult(best, vocab, history, interrupted)


def _run_epoch(
    state: TrainingState, epoch: int, train: ReportArrays, val: ReportArrays, config: TrainConfig
) -> None:
    """Train one epoch, validate (after the warm-up), and append the results to the history."""
    started = time.perf_counter()
    model, optimizer, history = state.model, state.optimizer, state.history
    lr = optimizer.lr
    word_loss, finding_loss = _train_epoch(
        model, optimizer, train, config, state.rngs["shuffle"], epoch
    )
    # No reports to score while the decoder waits for the warm-up to end.
    warm = epoch <= config.warmup_epochs
    f1, bleu4 = (math.nan, math.nan) if warm else validate(model, state.vocab, val)
    history.epoch.append(epoch)
    history.lr.append(lr)
    history.word_loss.append(word_loss)
    history.finding_loss.append(finding_loss)
    history.val_f1.append(f1)
    history.val_bleu4.append(bleu4)
    history.seconds.append(time.perf_counter() - started)


def _epoch_line(history: History, epochs: int, warm: bool) -> str:
    i, epoch = -1, history.epoch[-1]
    head = f"epoch {epoch}/{epochs}: "
    seconds = f" ({history.seconds[i]:.0f} s)"
    if warm:
        return (
            head
            + f"finding loss {history.finding_loss[i]:.3f} (warm-up: encoder and finding head)"
            + seconds
        )
    best = " *best" if history.best_epoch() == epoch else ""
    return (
        head + f"word loss {history.word_loss[i]:.3f}, finding loss {history.finding_loss[i]:.3f}, "
        f"val clinical micro-F1 {history.val_f1[i]:.3f}, BLEU-4 {history.val_bleu4[i]:.3f}"
        + seconds
        + best
    )


def _fresh(train_records: list[Record], config: TrainConfig) -> TrainingState:
    vocab = Vocabulary.build([r.report for r in train_records], min_count=config.min_count)
    model_config = ReportModelConfig(
        vocab_size=len(vocab),
        image_size=config.image_size,
        cell=config.cell,
        max_len=config.max_len,
    )
    rngs = {
        "init": np.random.default_rng([config.seed, 0]),  # initial weights, then dropout masks
        "shuffle": np.random.default_rng([config.seed, 1]),  # the batch order
    }
    model = ReportModel(model_config, rng=rngs["init"])  # Dropout keeps drawing from "init"
    model.to()  # onto the active backend's device, before the optimizer makes its moments there
    optimizer = Adam(model.parameters(), lr=config.lr)
    return TrainingState(model, vocab, optimizer, History(), rngs)


# Settings that shape the model, its vocabulary or the batches: a resumed run must keep them.
# (The others, such as epochs or lr, may change; the change is said and recorded.)
RESUME_MUST_MATCH = ("seed", "batch_size", "cell", "image_size", "max_len", "min_count")


def _resume(out: Path, config: TrainConfig, data: str | Path, log: Callable) -> TrainingState:
    path = last_path(out)
    if not path.is_file():
        raise ArgumentError("resume", f"{path} not found (it is written after each finished epoch)")
    model, vocab, meta = load_report_model(path)
    model.train()
    info = meta["info"]
    saved = info.get("train", {})
    for key in RESUME_MUST_MATCH:
        if key in saved and saved[key] != getattr(config, key):
            raise ArgumentError(
                "resume",
                f"{path} was trained with {key}={saved.get(key)!r}, not {getattr(config, key)!r}",
            )
    if Path(info.get("data", data)).resolve() != Path(data).resolve():
        raise ArgumentError(
            "resume", f"{path} was trained on the data in {info['data']}, not {data}"
        )
    history = History(**info["history"])
    changed = {
        key: [saved[key], value]
        for key, value in asdict(config).items()
        if key in saved and saved[key] != value
    }
    if changed:
        said = ", ".join(f"{key} {new!r} (was {old!r})" for key, (old, new) in changed.items())
        log(f"resuming {path} after epoch {len(history.epoch)} with {said}")
    resumed = [*info.get("resumed", []), {"after_epoch": len(history.epoch), "changed": changed}]
    optimizer = Adam(model.parameters(), lr=config.lr)
    optimizer.load_state_dict(
        {k[len("optimizer.") :]: v for k, v in meta["extra"].items() if k.startswith("optimizer.")}
    )
    optimizer.lr = config.lr  # the base rate: the schedule sets this epoch's rate from it
    rngs = {"init": model.dropout.rng, "shuffle": np.random.default_rng()}
    for name, generator in rngs.items():
        generator.bit_generator.state = info["rng_states"][name]
    return TrainingState(model, vocab, optimizer, history, rngs, resumed)


def _train_epoch(model, optimizer, train: ReportArrays, config, rng, epoch) -> tuple[float, float]:
    """One pass over a permutation of `train`; returns the mean (word loss, finding loss).

    In the first `config.warmup_epochs` epochs only the encoder and the finding head train
    (word loss NaN): see TrainConfig.warmup_epochs.
    """
    model.train()
    warming_up = epoch <= config.warmup_epochs
    order = rng.permutation(len(train))
    starts = range(0, len(order), config.batch_size)
    # Sums kept on the device and read every SHOW_EVERY batches (minirad.models.running): a
    # training step copies its batch in and nothing out.
    sums = RunningSums("words", "findings")
    bar = tqdm(
        starts, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=None, leave=False
    )
    with bar:
        for start in bar:
            rows = order[start : start + config.batch_size]
            images, tokens, findings = (to_device(a) for a in train.batch(rows))
            words, finding = train_step(
                model, optimizer, images, tokens, findings, config, warming_up
            )
            if words is None:  # the warm-up: no words yet
                sums.add(len(rows), findings=finding.data)
            else:
                sums.add(len(rows), words=words.data, findings=finding.data)
            if sums.batches % SHOW_EVERY == 0:  # the one read of the device sums in 10 batches
                means = sums.means()
                _check_finite(means, epoch, sums.batches)
                bar.set_postfix({name: f"{value:.3f}" for name, value in means.items()})
    means = sums.means(len(train))
    _check_finite(means, epoch, sums.batches)
    return (math.nan if warming_up else means["words"]), means["findings"]


def _check_finite(means: dict[str, float], epoch: int, batch: int) -> None:
    """TrainingDivergedError if a running mean loss is NaN or inf: a step has diverged.

    Called where the sums are read anyway (minirad.models.running): a check after every step
    would add a device-to-host copy, and a wait, to every step on a GPU.
    """
    for name, value in means.items():
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"training stopped at epoch {epoch}, by batch {batch}: the {name[:-1]} loss "
                f"is {value} (a learning rate too high, or a weight that is not finite)"
            )


def train_step(
    model: ReportModel,
    optimizer: Adam,
    images,
    tokens,
    findings,
    config: TrainConfig,
    warming_up: bool = False,
) -> tuple[Tensor | None, Tensor]:
    """One optimizer step on one batch: forward, loss, backward, clipping, Adam.

    images (B, 1, S, S), tokens (B, T) and findings (B, K), on the model's device (the
    caller moves each batch once). Returns the (word loss, finding loss) tensors, the word loss
    None in the warm-up (encoder and finding head only). Nothing is read back to the host:
    on a GPU the step queues its kernels and returns.
    """
    optimizer.zero_grad()
    if warming_up:  # the encoder and the finding head only: no decoder, no words
        finding_logits = model.encode(Tensor(images)).finding_logits
        loss = finding = F.binary_cross_entropy_with_logits(finding_logits, findings)
        words = None
    else:
        word_logits, finding_logits = model(
            Tensor(images), tokens, findings, config.encoder_learns_from_words
        )
        loss, words, finding = report_loss(
            word_logits, finding_logits, tokens[:, 1:], findings, config.finding_weight
        )
    loss.backward()
    clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    return words, finding


def validate(model: ReportModel, vocab: Vocabulary, val: ReportArrays) -> tuple[float, float]:
    """(clinical micro-F1, BLEU-4) of greedy reports for the studies of `val`.

    The reports are written in eval mode (no dropout); the model returns to the mode it was in.
    """
    was_training = model.training
    model.eval()
    hypotheses = [vocab.decode(d.tokens) for d in generate(model, val.images)]
    model.train(was_training)
    f1 = clinical_scores(val.true_sets(), labels_from_reports(hypotheses))["micro"]["f1"]
    bleu4 = nlg_scores(val.references, hypotheses)["BLEU-4"]
    return f1, bleu4


def _save_epoch(state: TrainingState, out: Path, info: dict) -> None:
    """OUT.last.npz always; OUT too when this epoch is the best; then the curves."""
    model, vocab, history = state.model, state.vocab, state.history
    epoch = history.epoch[-1]
    scores = {"epoch": epoch, "val_f1": history.val_f1[-1], "val_bleu4": history.val_bleu4[-1]}
    state_info = {
        **info,
        **scores,
        "history": asdict(history),
        "rng_states": {name: g.bit_generator.state for name, g in state.rngs.items()},
    }
    optimizer_state = {f"optimizer.{k}": v for k, v in state.optimizer.state_dict().items()}
    save_report_model(last_path(out), model, vocab, state_info, extra=optimizer_state)
    if history.best_epoch() in (epoch, None):  # None: no validated epoch yet, keep the latest
        save_report_model(out, model, vocab, {**info, **scores})
    plot_history(history, curves_path(out))


def plot_history(history: History, path: Path) -> None:
    """Training losses and validation scores per epoch, side by side, written atomically."""
    # A Figure of its own, not pyplot: no display needed, and no global backend switch that
    # would stop a notebook's inline figures.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(history.epoch, history.word_loss, "o-", label="words (cross-entropy)")
    left.plot(history.epoch, history.finding_loss, "s-", label="findings (BCE)")
    left.set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    left.legend()
    right.plot(history.epoch, history.val_f1, "o-", label="clinical micro-F1")
    right.plot(history.epoch, history.val_bleu4, "s-", label="BLEU-4")
    right.set(xlabel="epoch", ylabel="score", title="Validation (greedy reports)", ylim=(0, 1))
    right.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomically(path, buffer.getvalue())
