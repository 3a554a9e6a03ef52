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

from minirad.data.vocab import PAD_ID
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
        grid = self.encoder.blocks(images * 2.0 - 1.0)  # (B, D, G, G)
        B, D, G, _ = grid.shape
        keys = grid.reshape(B, D, G * G).transpose(1, 2)  # (B, L, D)
        strongest = F.max_pool2d(grid, G).reshape(B, D)
        summary = F.relu(self.summary(torch.cat([grid.reshape(B, D * G * G), strongest], 1)))
        finding_logits = self.finding_head(summary)
        # What the decoder reads: the encoder's outputs as constants, the true findings.
        keys, summary = keys.detach(), summary.detach()
        projected_keys = self.attention.key_proj(keys)
        both = torch.tanh(self.init_state(torch.cat([summary, findings], 1)))
        H = self.config.hidden_size
        lstm = self.config.cell == "lstm"
        state = (both[:, :H], both[:, H:]) if lstm else both[:, :H]
        word_vectors = self.embed(tokens[:, :-1])  # (B, T-1, E)
        logits = []
        for t in range(word_vectors.shape[1]):
            h = state[0] if lstm else state
            context, _ = self.attention(h, keys, projected_keys)
            state = self.cell(torch.cat([word_vectors[:, t], context, findings], 1), state)
            h = state[0] if lstm else state
            logits.append(self.output(self.dropout(torch.cat([h, context], 1))))
        return torch.stack(logits, 1), finding_logits


def torch_report_loss(word_logits, finding_logits, targets, findings, finding_weight=1.0):
    """report_loss in PyTorch: CE over the non-padding targets + lambda * BCE of the findings."""
    B, T, V = word_logits.shape
    words = F.cross_entropy(word_logits.reshape(B * T, V), targets.reshape(-1), ignore_index=PAD_ID)
    return words + finding_weight * F.binary_cross_entropy_with_logits(finding_logits, findings)
