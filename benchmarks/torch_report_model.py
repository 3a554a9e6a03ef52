"""minirad's report generator (minirad/models/report_model.py) in PyTorch: the speed peer.

Built attribute for attribute like ReportModel, so that minirad's state_dict loads into it with
no renaming, and it computes the same teacher-forced forward (see ReportModel.forward, with its
defaults: the decoder reads the true findings, and the encoder's keys and summary as constants)
and the same loss (report_loss). tests/test_gpu_benchmark.py checks that both give the same
loss from the same weights, so that benchmarks/gpu.py times the same work on both sides.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812

from minirad.data.findings import DECISION_THRESHOLD
from minirad.data.vocab import BOS_ID, EOS_ID, PAD_ID
from minirad.models.report_model import ReportModelConfig


class TorchAdditiveAttention(torch.nn.Module):
    """context, alpha = attention(h, keys): alpha = softmax(v^T tanh(W_k k + b_k + W_q h))."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.key_proj = torch.nn.Linear(key_dim, hidden_dim)
        self.query_proj = torch.nn.Linear(query_dim, hidden_dim, bias=False)
        self.score = torch.nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, query, keys, projected_keys):
        e = self.score(torch.tanh(projected_keys + self.query_proj(query).unsqueeze(1)))
        alpha = torch.softmax(e.squeeze(2), dim=1)  # (B, L)
        return (alpha.unsqueeze(2) * keys).sum(dim=1), alpha


class TorchReportModel(torch.nn.Module):
    """forward(images (B, 1, S, S), tokens (B, T), findings (B, K))
    -> (word_logits (B, T-1, V), finding_logits (B, K))."""

    def __init__(self, config: ReportModelConfig) -> None:
        super().__init__()
        self.config = config
        D, K, H = config.channels[-1], config.num_findings, config.hidden_size
        M, L = config.summary_size, config.grid_side**2
        blocks: list[torch.nn.Module] = []
        previous = 1
        for out_channels, convs in zip(config.channels, config.convs_per_block, strict=True):
            for _ in range(convs):
                blocks += [torch.nn.Conv2d(previous, out_channels, 3, padding=1), torch.nn.ReLU()]
                previous = out_channels
            blocks.append(torch.nn.MaxPool2d(2))
        self.encoder = torch.nn.Module()
        self.encoder.blocks = torch.nn.Sequential(*blocks)
        self.summary = torch.nn.Linear(D * L + D, M)
        self.finding_head = torch.nn.Linear(M, K)
        self.init_state = torch.nn.Linear(M + K, 2 * H)
        self.embed = torch.nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        self.attention = TorchAdditiveAttention(H, D, config.attention_dim)
        cell = torch.nn.LSTMCell if config.cell == "lstm" else torch.nn.GRUCell
        self.cell = cell(config.embed_dim + D + K, H)
        self.dropout = torch.nn.Dropout(config.dropout)
        self.output = torch.nn.Linear(H + D, config.vocab_size)

    def forward(self, images, tokens, findings):
        keys, summary, finding_logits = self.encode(images)
        # What the decoder reads: the encoder's outputs as constants, the true findings.
        return self.decode(keys.detach(), summary.detach(), tokens, findings), finding_logits

    def encode(self, images):
        """-> keys (B, L, D), summary (B, M), finding_logits (B, K) (ReportModel.encode)."""
        grid = self.encoder.blocks(images * 2.0 - 1.0)  # (B, D, G, G)
        B, D, G, _ = grid.shape
        keys = grid.reshape(B, D, G * G).transpose(1, 2)  # (B, L, D)
        strongest = F.max_pool2d(grid, G).reshape(B, D)
        summary = F.relu(self.summary(torch.cat([grid.reshape(B, D * G * G), strongest], 1)))
        return keys, summary, self.finding_head(summary)

    def initial_state(self, summary, findings):
        both = torch.tanh(self.init_state(torch.cat([summary, findings], 1)))
        H = self.config.hidden_size
        return (both[:, :H], both[:, H:]) if self.config.cell == "lstm" else both[:, :H]

    def step(self, keys, projected_keys, findings, word_vectors, state):
        """One decoder step -> (word logits (B, V), new state, alpha (B, L))."""
        lstm = self.config.cell == "lstm"
        h = state[0] if lstm else state
        context, alpha = self.attention(h, keys, projected_keys)
        state = self.cell(torch.cat([word_vectors, context, findings], 1), state)
        h = state[0] if lstm else state
        return self.output(self.dropout(torch.cat([h, context], 1))), state, alpha

    def decode(self, keys, summary, tokens, findings):
        """word_logits (B, T-1, V) by teacher forcing (ReportModel.decode)."""
        projected_keys = self.attention.key_proj(keys)
        state = self.initial_state(summary, findings)
        word_vectors = self.embed(tokens[:, :-1])  # (B, T-1, E)
        logits = []
        for t in range(word_vectors.shape[1]):
            step_logits, state, _ = self.step(
                keys, projected_keys, findings, word_vectors[:, t], state
            )
            logits.append(step_logits)
        return torch.stack(logits, 1)


@torch.no_grad()
def torch_greedy(model: TorchReportModel, images, max_len: int) -> list[list[int]]:
    """minirad.report.decoding.greedy in PyTorch: from the images, the most probable word at
    every step (its log-probability summed, as minirad's does), until every report has ended;
    the decoder reads the finding head's decisions. -> each image's tokens, <eos> excluded."""
    keys, summary, finding_logits = model.encode(images)
    decisions = (torch.sigmoid(finding_logits) >= DECISION_THRESHOLD).to(summary.dtype)
    projected_keys = model.attention.key_proj(keys)
    state = model.initial_state(summary, decisions)
    B = images.shape[0]
    previous = torch.full((B,), BOS_ID, dtype=torch.int64)
    done = torch.zeros(B, dtype=torch.bool)
    log_prob = torch.zeros(B, dtype=torch.float64)
    chosen_words = []
    for _ in range(max_len - 1):
        logits, state, _ = model.step(keys, projected_keys, decisions, model.embed(previous), state)
        log_p = torch.log_softmax(logits, dim=1)
        chosen = log_p.argmax(dim=1)
        log_prob += torch.where(done, 0.0, log_p[torch.arange(B), chosen].double())
        done |= chosen == EOS_ID
        chosen_words.append(chosen)
        previous = chosen
        if bool(done.all()):
            break
    words = torch.stack(chosen_words, 1).tolist()
    return [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in words]


def torch_report_loss(word_logits, finding_logits, targets, findings, finding_weight=1.0):
    """report_loss in PyTorch: CE over the non-padding targets + lambda * BCE of the findings."""
    B, T, V = word_logits.shape
    words = F.cross_entropy(word_logits.reshape(B * T, V), targets.reshape(-1), ignore_index=PAD_ID)
    return words + finding_weight * F.binary_cross_entropy_with_logits(finding_logits, findings)
