"""Check a report model's description (a checkpoint's meta["config"]) before building the model.

    check_model_config(meta["config"])     # ValueError "config: <field>: <reason>", one line

A checkpoint is a file that people pass around, and its "config" says which arrays to allocate.
Read as it is, `{"channels": "abcd"}` builds convolutions from the letters of a string (a
TypeError deep in a layer), and `{"image_size": 1048576}` a few-megabyte file asks for a 1.16
TiB array (MemoryError). So every field is checked for its type and range, and the model it
describes for its size, before a single weight is allocated:

* the parameters: counted from the config exactly as ReportModel lays them out (the tests check
  the count against a built model), at most MAX_PARAMETERS;
* the encoder's feature maps for one image (what reporting allocates): at most MAX_ACTIVATIONS.

Old checkpoints may lack `convs_per_block` and `finding_input` (ReportModelConfig.from_dict
fills them in); every other field must be there, and no field that the model does not know.
"""

from __future__ import annotations

import math
from typing import NoReturn

from minirad.data.findings import FINDINGS
from minirad.models.report_model import CELLS, FINDING_INPUTS

__all__ = ["MAX_ACTIVATIONS", "MAX_PARAMETERS", "check_model_config", "parameter_count"]

# 100 million parameters are 400 MB of float32 (the bundled model has about 1.2 million), and
# 100 million activations per image are 400 MB per image in a batch.
MAX_PARAMETERS = 100_000_000
MAX_ACTIVATIONS = 100_000_000

# field -> (smallest, largest) for the whole numbers; the largest are far above any sensible
# model and far below what would exhaust memory one field at a time.
INTEGER_FIELDS = {
    "vocab_size": (5, 1_000_000),
    "image_size": (16, 4096),
    "summary_size": (1, 65536),
    "embed_dim": (1, 65536),
    "hidden_size": (1, 65536),
    "attention_dim": (1, 65536),
    "max_len": (2, 100_000),
}
OPTIONAL_FIELDS = ("convs_per_block", "finding_input")
KNOWN_FIELDS = (*INTEGER_FIELDS, "channels", "cell", "dropout", "num_findings", *OPTIONAL_FIELDS)


def check_model_config(meta_config: dict) -> None:
    """Raise ValueError "config: <field>: <reason>" unless `meta_config` describes a model that
    ReportModelConfig.from_dict can take and that fits the bounds above."""
    if not isinstance(meta_config, dict):
        _refuse("", f"must be an object, got {type(meta_config).__name__}")
    unknown = sorted(set(meta_config) - set(KNOWN_FIELDS))
    if unknown:
        _refuse(unknown[0], "is not a field of the report model")
    missing = [name for name in KNOWN_FIELDS if name not in meta_config]
    missing = [name for name in missing if name not in OPTIONAL_FIELDS]
    if missing:
        _refuse(missing[0], "is missing")
    for name, (low, high) in INTEGER_FIELDS.items():
        _check_integer(name, meta_config[name], low, high)
    channels = _check_counts("channels", meta_config["channels"], 1, 4096, max_length=8)
    blocks = meta_config.get("convs_per_block", [1] * len(channels))
    convs = _check_counts("convs_per_block", blocks, 1, 16, max_length=8)
    if len(convs) != len(channels):
        _refuse("convs_per_block", f"needs one count per block ({len(channels)}), got {convs}")
    _check_choice("cell", meta_config["cell"], CELLS)
    _check_choice(
        "finding_input", meta_config.get("finding_input", "probabilities"), FINDING_INPUTS
    )
    dropout = meta_config["dropout"]
    if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
        _refuse("dropout", f"must be a number in [0, 1), got {dropout!r}")
    if meta_config["num_findings"] != len(FINDINGS) or isinstance(
        meta_config["num_findings"], bool
    ):
        _refuse("num_findings", f"must be {len(FINDINGS)}, got {meta_config['num_findings']!r}")
    _check_size(meta_config, channels, convs)


def _check_size(config: dict, channels: list[int], convs: list[int]) -> None:
    """The parameter count and the feature maps of one image, within their bounds."""
    size = config["image_size"]
    if size % 2 ** len(channels):
        _refuse("image_size", f"must be a multiple of {2 ** len(channels)}, got {size}")
    pairs = enumerate(zip(channels, convs, strict=True))
    activations = sum(c * (size // 2**b) ** 2 * n for b, (c, n) in pairs)
    if activations > MAX_ACTIVATIONS:
        _refuse(
            "image_size",
            f"{size} with channels {channels} makes {activations:,} feature values per image, "
            f"more than {MAX_ACTIVATIONS:,}",
        )
    parameters = parameter_count(config)
    if parameters > MAX_PARAMETERS:
        _refuse("", f"describes {parameters:,} parameters, more than {MAX_PARAMETERS:,}")


def parameter_count(config: dict) -> int:
    """The number of parameters of ReportModel(ReportModelConfig.from_dict(config)), counted
    from the config alone (see ReportModel.__init__ for the layers)."""
    channels = list(config["channels"])
    convs = list(config.get("convs_per_block", [1] * len(channels)))
    V, S, E = config["vocab_size"], config["image_size"], config["embed_dim"]
    M, H, A = config["summary_size"], config["hidden_size"], config["attention_dim"]
    D, K = channels[-1], config["num_findings"]
    L = (S // 2 ** len(channels)) ** 2  # cells of the feature grid
    encoder, previous = 0, 1
    for out, count in zip(channels, convs, strict=True):
        encoder += (previous * 9 + 1) * out + (count - 1) * (out * 9 + 1) * out  # 3x3 convs
        previous = out
    gates = 4 if config["cell"] == "lstm" else 3
    layers = {
        "summary": (D * L + D + 1) * M,
        "finding_head": (M + 1) * K,
        "init_state": (M + K + 1) * 2 * H,
        "embed": V * E,
        "attention": (D + 1) * A + H * A + A,  # keys (with bias), query, score
        "cell": gates * H * (E + D + K) + gates * H * H + 2 * gates * H,
        "output": (H + D + 1) * V,
    }
    return encoder + sum(layers.values())


def _check_integer(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _refuse(name, f"must be a whole number from {low} to {high:,}, got {value!r}")


def _check_counts(name: str, value: object, low: int, high: int, max_length: int) -> list[int]:
    """A list of 1..max_length whole numbers in [low, high]."""
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= max_length:
        _refuse(name, f"must be a list of 1 to {max_length} whole numbers, got {value!r}")
    for item in value:
        _check_integer(name, item, low, high)
    return list(value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _refuse(name, f"must be one of {list(choices)}, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _refuse(field: str, reason: str) -> NoReturn:
    where = f"config: {field}: " if field else "config: "
    raise ValueError(where + reason)
