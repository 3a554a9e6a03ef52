"""The report generator: a CNN encoder, a finding head and an attention decoder (Show-Attend-Tell).

    images (B, 1, S, S), pixels in [0, 1]
      |  encoder: 4 blocks of [(Conv2d 3x3 pad 1 -> ReLU) x 1, 1, 2, 2 -> MaxPool2d 2]
      |           with 8, 16, 32, 64 channels
      v
    grid (B, D, S/16, S/16)  ->  keys (B, L, D), L = (S/16)^2 cells       "where" the image shows
      |                  summary (B, M) = ReLU(Linear([flatten(grid), max over cells]))
      |  finding head: Linear(M, K) on summary                               K = len(FINDINGS)
      v
    finding_logits (B, K)  ->  p = sigmoid(finding_logits)                the finding analysis
      |
      |  decoder, one word at a time, t = 1..T:
      |    context_t, alpha_t = attention(h_{t-1}, keys)                  alpha_t (B, L)
      |    h_t, c_t = LSTMCell([embed(w_{t-1}), context_t, f], (h_{t-1}, c_{t-1}))
      |    logits_t = Linear([h_t, context_t])                           (B, V) over the vocabulary
      v
    P(w_t | w_<t, image) = softmax(logits_t)

The summary reads the whole grid with one weight per (channel, cell): it knows *where* a
feature is, which a mean or max over the cells would forget. A radiograph is positioned the same
way every time, and position is meaning: a heart wider than half the thorax is cardiomegaly; a
bright line in the trachea is a tube. (With mean+max pooling instead, both this engine and
PyTorch left the finding head at the base rate for 5 epochs; with the flattened grid it learned
from the first epoch.)

The decoder reads a finding vector f (B, K) at every step: the pipeline goes "CNN features ->
finding analysis -> decoder", so what the report states is conditioned on what the finding head
decided, and the review step can later compare the two. The initial state is
h_0 = tanh(W_h [summary, f] + b_h), c_0 likewise, so the first word already knows the image.

Which f? (ReportModelConfig.finding_input.)
- "decisions" (the default): f = 1[p >= 0.5] at inference, and the *true* findings in training:
  teacher forcing for the findings, as for the words. The decoder learns "findings -> sentences"
  from clean inputs, and at inference it meets the same kind of 0/1 vector it trained on.
- "probabilities": f = p in training and at inference (the first bundled model). In training
  the head soon gives p near 0 or 1 on the images it has seen, so the decoder never learned what
  an unsure p = 0.7 should say: on unseen phantoms its text disagreed with the head on 6% of the
  studies (2% with "decisions"), and its clinical micro-F1 was 0.011 below the head's own.

Training minimises one loss: cross-entropy of the next word under teacher forcing (the true
previous word is fed in, padding ignored) plus lambda times the binary cross-entropy of the finding
head. By default the word loss's gradient stops at the decoder, so the encoder learns from the
findings alone (see `forward`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from minirad import functional as F
from minirad.autograd import Tensor, concatenate, like, stack
from minirad.data.findings import DECISION_THRESHOLD, FINDINGS
from minirad.data.vocab import PAD_ID
from minirad.models.fused_decoder import teacher_forced_decoder
from minirad.nn.attention import AdditiveAttention
from minirad.nn.layers import (
    Conv2d,
    Dropout,
    Embedding,
    Linear,
    MaxPool2d,
    ReLU,
    Seed,
    Sequential,
    as_generator,
)
from minirad.nn.module import Module
from minirad.nn.recurrent import GRUCell, LSTMCell, unstack

CELLS = ("lstm", "gru")
FINDING_INPUTS = ("decisions", "probabilities")


@dataclass(frozen=True)
class ReportModelConfig:
    """Every number that fixes the model's shapes; stored in the checkpoint beside the weights.

    image_size: side S of the square input (a multiple of 16: four 2x2 poolings).
    channels: output channels of the four conv blocks; the last one is the key size D.
    convs_per_block: how many conv + ReLU pairs each block has before its pooling.
    summary_size: M, the image summary that the finding head and the initial state read.
    embed_dim, hidden_size, attention_dim: word vectors, decoder state, attention's hidden layer.
    cell: "lstm" or "gru".  dropout: on the decoder's output features, training only.
    finding_input: what the decoder reads of the findings, "decisions" or "probabilities"
        (see the module docstring).
    max_len: the longest report, in tokens with <bos> and <eos>, that the decoder writes.
    """

    vocab_size: int
    image_size: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64)
    # Convolutions per block. A second 3x3 convolution in the two low-resolution blocks (a
    # larger receptive field and one more non-linearity where it is cheap) raised the finding
    # head's validation micro-F1 from 0.78 to 0.82 and pneumothorax F1 from 0.1 to 0.6 in a
    # PyTorch run of the same model, for 30% more encoder time.
    convs_per_block: tuple[int, ...] = (1, 1, 2, 2)
    summary_size: int = 128
    embed_dim: int = 64
    hidden_size: int = 256
    attention_dim: int = 64
    cell: str = "lstm"
    dropout: float = 0.1
    max_len: int = 90
    num_findings: int = len(FINDINGS)
    finding_input: str = "decisions"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {CELLS}, got {self.cell!r}")
        if self.finding_input not in FINDING_INPUTS:
            raise ValueError(
                f"finding_input: expected one of {FINDING_INPUTS}, got {self.finding_input!r}"
            )
        if len(self.convs_per_block) != len(self.channels) or min(self.convs_per_block) < 1:
            raise ValueError(
                f"convs_per_block: one count >= 1 per block of channels {self.channels}, "
                f"got {self.convs_per_block}"
            )
        downsampling = 2 ** len(self.channels)
        if self.image_size < downsampling or self.image_size % downsampling:
            raise ValueError(
                f"image_size: must be a multiple of {downsampling} "
                f"({len(self.channels)} poolings by 2), got {self.image_size}"
            )
        if self.vocab_size < 5:
            raise ValueError(
                f"vocab_size: need the 4 special tokens and a word, got {self.vocab_size}"
            )

    @property
    def grid_side(self) -> int:
        """The side of the feature grid: S / 2^(number of blocks)."""
        return self.image_size // 2 ** len(self.channels)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["convs_per_block"] = list(self.convs_per_block)
        return data

    @staticmethod
    def from_dict(data: dict) -> ReportModelConfig:
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        # Checkpoints written before the field existed had one convolution per block.
        data["convs_per_block"] = tuple(data.get("convs_per_block", [1] * len(data["channels"])))
        # ... and their decoders read the probabilities.
        data.setdefault("finding_input", "probabilities")
        return ReportModelConfig(**data)


def he_initialise(conv: Conv2d, rng: np.random.Generator) -> None:
    """w ~ N(0, 2 / fan_in), b = 0 (He et al., 2015), fan_in = C_in * k * k.

    A ReLU zeroes half of its inputs, halving the variance that passes through; the factor 2
    restores it, so the activations keep their scale through the blocks. PyTorch's default
    (uniform, variance 1 / (3 fan_in)) shrinks them about 2.4x per block: after four blocks the
    finding head saw features 30x smaller than the input, nearly the same for every image, and
    did not learn in 4 epochs.
    """
    fan_in = int(np.prod(conv.weight.shape[1:]))
    w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=conv.weight.shape)
    conv.weight.data[...] = w.astype(conv.weight.dtype)
    if conv.bias is not None:
        conv.bias.data[...] = 0


class Encoder(Module):
    """images (B, 1, S, S) in [0, 1] -> feature grid (B, D, S/16, S/16)."""

    def __init__(
        self,
        channels: tuple[int, ...],
        convs_per_block: tuple[int, ...] | None = None,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        rng = as_generator(rng)
        convs_per_block = convs_per_block or (1,) * len(channels)
        blocks, previous = [], 1
        for out_channels, convs in zip(channels, convs_per_block, strict=True):
            for _ in range(convs):
                conv = Conv2d(previous, out_channels, 3, padding=1, rng=rng, dtype=dtype)
                he_initialise(conv, rng)
                blocks += [conv, ReLU()]
                previous = out_channels
            blocks.append(MaxPool2d(2))
        self.blocks = Sequential(*blocks)

    def forward(self, images: Tensor) -> Tensor:
        # Centre the [0, 1] pixels on zero (see models/classifier.py: it trains much faster).
        return self.blocks(images * 2.0 - 1.0)


class ReportModel(Module):
    """The whole model; see the module docstring for the data flow and the shapes.

    forward(images (B, 1, S, S), tokens (B, T) ints) -> (word_logits (B, T-1, V),
    finding_logits (B, K)): teacher forcing, word t+1 predicted from tokens[:, :t+1].
    For inference, `encode` once and then `step` word by word (minirad.report.decoding).

    fused: compute with the fused Functions (default): the attention step as one Function, and
    in training with an LSTM the whole teacher-forced decoder as one (models/fused_decoder.py).
    Set it False for the node-by-node path, the one to read first; both give the same numbers.
    """

    fused = True

    def __init__(self, config: ReportModelConfig, rng: Seed = None, dtype=np.float32) -> None:
        super().__init__()
        rng = as_generator(rng)
        self.config = config
        D, K, H = config.channels[-1], config.num_findings, config.hidden_size
        M, L = config.summary_size, config.grid_side**2
        self.encoder = Encoder(config.channels, config.convs_per_block, rng=rng, dtype=dtype)
        self.summary = Linear(D * L + D, M, rng=rng, dtype=dtype)
        self.finding_head = Linear(M, K, rng=rng, dtype=dtype)
        self.init_state = Linear(M + K, 2 * H, rng=rng, dtype=dtype)  # [h_0, c_0]
        self.embed = Embedding(
            config.vocab_size, config.embed_dim, padding_idx=PAD_ID, rng=rng, dtype=dtype
        )
        self.attention = AdditiveAttention(H, D, config.attention_dim, rng=rng, dtype=dtype)
        cell_type = LSTMCell if config.cell == "lstm" else GRUCell
        self.cell = cell_type(config.embed_dim + D + K, H, rng=rng, dtype=dtype)
        self.dropout = Dropout(config.dropout, rng=rng)
        self.output = Linear(H + D, config.vocab_size, rng=rng, dtype=dtype)

    # -- the image side ----------------------------------------------------------------------

    def encode(self, images: Tensor) -> Encoded:
        """Run the encoder and the finding head once per image (the decoder reuses them)."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (1, size, size):
            raise ValueError(f"images: expected shape (B, 1, {size}, {size}), got {images.shape}")
        grid = self.encoder(images)  # (B, D, G, G)
        B, D, G, _ = grid.shape
        keys = grid.reshape(B, D, G * G).transpose(0, 2, 1)  # (B, L, D): one key per cell
        # The flattened grid says where each feature is; the maximum over the cells adds
        # "somewhere, strongly" for small findings (a nodule lights up one or two cells).
        strongest = F.max_pool2d(grid, G).reshape(B, D)
        summary = self.summary(concatenate([grid.reshape(B, D * G * G), strongest], axis=1))
        summary = summary.relu()  # (B, M)
        finding_logits = self.finding_head(summary)  # (B, K)
        probabilities = finding_logits.sigmoid()
        if self.config.finding_input == "decisions":
            # A constant: no gradient flows through a threshold.
            decisions = probabilities.data >= DECISION_THRESHOLD
            finding_inputs = Tensor(decisions.astype(probabilities.dtype))
        else:
            finding_inputs = probabilities
        return Encoded(
            keys=keys,
            projected_keys=self.attention.project_keys(keys),
            summary=summary,
            finding_logits=finding_logits,
            finding_probabilities=probabilities,
            finding_inputs=finding_inputs,
        )

    def initial_state(self, encoded: Encoded):
        """(h_0, c_0) for the LSTM, h_0 for the GRU, from [summary, f]: each (B, H)."""
        H = self.config.hidden_size
        both = self.init_state(concatenate([encoded.summary, encoded.finding_inputs], axis=1))
        both = both.tanh()
        h0, c0 = both[:, :H], both[:, H:]
        return (h0, c0) if self.config.cell == "lstm" else h0

    # -- the text side -----------------------------------------------------------------------

    def step(self, encoded: Encoded, word_vectors: Tensor, state):
        """One decoder step: (word_vectors (B, E) of the previous words, state) ->
        (word logits (B, V), new state, alpha (B, L))."""
        h = state[0] if self.config.cell == "lstm" else state
        context, alpha = self.attention(
            h, encoded.keys, projected_keys=encoded.projected_keys, fused=self.fused
        )
        inputs = concatenate([word_vectors, context, encoded.finding_inputs], axis=1)
        state = self.cell(inputs, state)
        h = state[0] if self.config.cell == "lstm" else state
        features = self.dropout(concatenate([h, context], axis=1))  # (B, H + D)
        return self.output(features), state, alpha

    def forward(
        self,
        images: Tensor,
        tokens: np.ndarray,
        findings: np.ndarray | None = None,
        encoder_learns_from_words: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Teacher forcing. findings (B, K) in {0, 1}, the true findings: with finding_input
        "decisions" the decoder reads them instead of the head's decisions (see module doc).

        encoder_learns_from_words: let the word loss's gradient flow back into the encoder.
        Off by default: the decoder reads the encoder's keys and summary as constants, so the
        encoder learns from the finding loss alone. The reason to try it: on 1400 unseen
        phantoms, a PyTorch run of this encoder trained on the findings alone gave a finding
        head of micro-F1 0.918, this model trained jointly 0.904. With the gradient stopped
        this model's head reached 0.907 there and 0.916 on the 400 test studies (0.905
        jointly): a smaller gain than PyTorch's run promised, in the same direction.
        """
        tokens = like(tokens, images.data)  # on the images' device (no copy if already there)
        if tokens.ndim != 2 or tokens.shape[0] != images.shape[0] or tokens.shape[1] < 2:
            raise ValueError(
                f"tokens: expected shape ({images.shape[0]}, T >= 2), got {tokens.shape}"
            )
        encoded = self.encode(images)
        word_logits = self.decode(encoded, tokens, findings, encoder_learns_from_words)
        return word_logits, encoded.finding_logits  # (B, T-1, V), (B, K)

    def decode(
        self,
        encoded: Encoded,
        tokens,
        findings: np.ndarray | None = None,
        encoder_learns_from_words: bool = False,
    ) -> Tensor:
        """The text side of `forward`: word_logits (B, T-1, V) of tokens (B, T) (on the
        encoded images' device) under teacher forcing; findings and encoder_learns_from_words
        as in `forward`."""
        tokens = like(tokens, encoded.keys.data)  # no copy if already there
        seen = self._teacher_forced(encoded, findings, encoder_learns_from_words)
        state = self.initial_state(seen)
        # All input words are embedded in one lookup.
        word_vectors = self.embed(tokens[:, :-1])  # (B, T-1, E)
        if self.fused and self.config.cell == "lstm":
            return self._decode_fused(seen, word_vectors, state)
        logits = []
        for vectors in unstack(word_vectors, axis=1):  # T-1 tensors (B, E), step by step
            step_logits, state, _ = self.step(seen, vectors, state)
            logits.append(step_logits)
        return stack(logits, axis=1)  # (B, T-1, V)

    def _decode_fused(self, seen: Encoded, word_vectors: Tensor, state) -> Tensor:
        """The loop of `forward` as one Function (models/fused_decoder.py), then dropout and the
        output layer on all steps at once: the same logits (B, T, V), faster to train."""
        h0, c0 = state
        features, _ = teacher_forced_decoder(
            word_vectors, seen.keys, seen.projected_keys, seen.finding_inputs, h0, c0,
            self.attention, self.cell,
        )  # fmt: skip
        features = self.dropout.forward_per_step(features, axis=1)  # (B, T, H + D)
        B, T, width = features.shape
        return self.output(features.reshape(B * T, width)).reshape(B, T, -1)

    def _teacher_forced(
        self, encoded: Encoded, findings: np.ndarray | None, encoder_learns_from_words: bool
    ) -> Encoded:
        """What the decoder reads in training, as a new Encoded (`encoded` is left as it is):
        cut from the encoder's graph unless encoder_learns_from_words, and with the true
        `findings` as its finding inputs when finding_input is "decisions"."""
        seen = encoded if encoder_learns_from_words else self._cut_from_encoder(encoded)
        if findings is None or self.config.finding_input != "decisions":
            return seen
        expected = encoded.finding_inputs.shape
        findings = like(findings, encoded.summary.data)
        if tuple(findings.shape) != expected:
            raise ValueError(f"findings: expected shape {expected}, got {tuple(findings.shape)}")
        true_findings = Tensor(findings.astype(encoded.summary.dtype))
        return replace(seen, finding_inputs=true_findings)

    def _cut_from_encoder(self, encoded: Encoded) -> Encoded:
        """What the decoder reads of `encoded`, with the encoder side cut from the graph: the
        keys and the summary become constants, so the word loss trains the decoder's own weights
        (the key projection included) and stops there."""
        keys = encoded.keys.detach()
        return replace(
            encoded,
            keys=keys,
            projected_keys=self.attention.project_keys(keys),
            summary=encoded.summary.detach(),
        )


@dataclass
class Encoded:
    """What the decoder needs from the image, computed once per image.

    keys (B, L, D), projected_keys (B, L, A), summary (B, M), finding_logits,
    finding_probabilities and finding_inputs (B, K), the last being what the decoder reads
    (ReportModelConfig.finding_input).
    """

    keys: Tensor
    projected_keys: Tensor
    summary: Tensor
    finding_logits: Tensor
    finding_probabilities: Tensor
    finding_inputs: Tensor

    def select(self, rows: np.ndarray) -> Encoded:
        """The same tensors for the images `rows` (repeats allowed): beam search copies an image
        once per hypothesis. Inference only: no gradient flows through the selection."""
        rows = like(rows, self.keys.data)  # an index array where the tensors are
        return Encoded(*(Tensor(getattr(self, f.name).data[rows]) for f in fields(self)))


def report_loss(
    word_logits: Tensor,
    finding_logits: Tensor,
    targets: np.ndarray,
    finding_targets: np.ndarray,
    finding_weight: float = 1.0,
    pad_id: int = PAD_ID,
) -> tuple[Tensor, Tensor, Tensor]:
    """(total, word loss, finding loss) for one batch.

    word loss = mean over the non-padding targets of -log softmax(word_logits)[target]
                (targets (B, T-1) = tokens[:, 1:], padding ignored);
    finding loss = mean over (B, K) of BCE(finding_logits, finding_targets in {0, 1});
    total = word loss + finding_weight * finding loss.
    """
    B, T, V = word_logits.shape
    words = F.cross_entropy(word_logits.reshape(B * T, V), targets.reshape(-1), ignore_index=pad_id)
    findings = F.binary_cross_entropy_with_logits(finding_logits, finding_targets)
    return words + findings * finding_weight, words, findings
