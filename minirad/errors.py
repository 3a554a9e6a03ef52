"""ArgumentError: a library function names the argument it refuses, and the CLI names the flag.

    raise ArgumentError("warmup_epochs", f"must be an integer >= 0, got {value!r}")
    str(error)    # "warmup_epochs: must be an integer >= 0, got -1"  (what an API caller reads)
    # `minirad train --warmup-epochs -1` prints "--warmup-epochs: must be ..." (minirad.cli)

The library never words its errors as command-line flags: a notebook calling
train_report_model(out="model.pt") has no `--out`. The command line knows which flag sets which
argument and says it in its own words.
"""

from __future__ import annotations


class ArgumentError(ValueError):
    """A bad value for the argument `argument`; the message is one line: '<argument>: <reason>'."""

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")
