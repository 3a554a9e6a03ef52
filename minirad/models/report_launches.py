"""The kernel launches of one training step of the report model, recorded at full size.

    launches = training_step_launches()    # the bundled model, the trainer's batch size
    launches[0].kernel, launches[0].grid   # 'conv2d_forward_tiled_f32', (2048, 1, 1)

One step as the trainer runs it after its warm-up (minirad/models/train_report.py): teacher-
forced forward, report_loss, backward, clip_grad_norm_, an Adam step. The engine runs on host
NumPy arrays with the CUDA C host code as its kernels, launched through the launch recorder
(kernels/runtime/launch_record.py): every launch is validated and recorded, none is run, and
the outputs are zeros. Nothing in the step chooses a kernel or a shape from a value, so the
record is the launches a GPU would see, at the shapes it would see them.

The shapes are the bundled model's (minirad/weights/default.npz: its config), the batch the
trainer's default (TrainConfig.batch_size) and reports of the model's max_len tokens, the
longest a batch holds (every position a word: no row is padding). This is what
tests/test_geometry.py checks and benchmarks/occupancy.py tabulates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minirad import backend
from minirad.data.vocab import BOS_ID, SPECIALS
from minirad.kernels.runtime.launch_record import Launch, recording_ops
from minirad.models.report_checkpoint import load_report_model
from minirad.models.train_report import TrainConfig, train_step
from minirad.optim import Adam

FIRST_WORD_ID = len(SPECIALS)  # the first id after <pad>, <bos>, <eos>, <unk>


def training_step_launches(
    model_path: str | Path | None = None, batch_size: int | None = None, **versions: str
) -> list[Launch]:
    """Every CUDA C launch of one training step, in order (see the module docstring).

    model_path: a report model (default: the bundled one); batch_size: default the trainer's.
    versions: a kernel version per op folder (conv2d="naive"), else each folder's default.
    """
    from minirad.report.pipeline import default_model_path

    model, _, _ = load_report_model(model_path or default_model_path())
    model.train()  # dropout on, as in training
    config, train = model.config, TrainConfig()
    B = batch_size or train.batch_size
    images = np.zeros((B, 1, config.image_size, config.image_size), dtype=np.float32)
    tokens = np.full((B, config.max_len), FIRST_WORD_ID, dtype=np.int64)
    tokens[:, 0] = BOS_ID
    findings = np.zeros((B, config.num_findings), dtype=np.float32)
    optimizer = Adam(model.parameters(), lr=train.lr)

    launches: list[Launch] = []
    with backend.use_ops(recording_ops(launches, **versions)):
        train_step(model, optimizer, images, tokens, findings, train)
    return launches
