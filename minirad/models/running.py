"""Per-batch numbers summed where they are computed, and read back rarely.

A training loop wants the mean loss of the epoch and a progress bar that shows it. Reading a
loss with `float(loss)` after every batch is free on the CPU, but on a GPU it is a
device-to-host copy that also waits for every queued kernel to finish: the host stops feeding
the GPU once per batch. So the sums stay on the device (a 0-d array each), and are read in one
copy when they are wanted: for the progress bar every SHOW_EVERY batches, and at the end.

    sums = RunningSums("loss")
    for batch ...:
        sums.add(len(batch), loss=loss.data)         # no copy
        if sums.batches % SHOW_EVERY == 0:
            bar.set_postfix(sums.text())              # one copy for all the names
    mean = sums.means()["loss"]                       # one copy
"""

from __future__ import annotations

from typing import Any

from minirad.autograd import array_module, to_host

SHOW_EVERY = 10  # batches between progress-bar updates: one device-to-host copy each


class RunningSums:
    """Weighted sums of named per-batch values (Python numbers or 0-d arrays on any device)."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.totals: dict[str, Any] = {name: 0.0 for name in names}
        self.count = 0  # the weights added so far (images, usually)
        self.batches = 0

    def add(self, count: int, **values: Any) -> None:
        """Add count * value to each named sum (a name left out adds nothing this time)."""
        for name, value in values.items():
            if hasattr(value, "astype"):  # summed in float64, as Python floats would be
                value = value.astype("float64")
            self.totals[name] = self.totals[name] + value * count
        self.count += count
        self.batches += 1

    def sums(self) -> dict[str, float]:
        """The sums as Python floats: one copy from the device for all of them."""
        on_device = [name for name in self.names if hasattr(self.totals[name], "dtype")]
        values = {name: float(self.totals[name]) for name in self.names if name not in on_device}
        if on_device:
            xp = array_module(self.totals[on_device[0]])
            read = to_host(xp.stack([self.totals[name] for name in on_device]))
            values.update(zip(on_device, map(float, read), strict=True))
        return values

    def means(self, count: int | None = None) -> dict[str, float]:
        """The sums divided by `count` (default: the weights added)."""
        divisor = count or self.count or 1
        return {name: value / divisor for name, value in self.sums().items()}

    def text(self) -> dict[str, str]:
        """The means formatted for tqdm's set_postfix."""
        return {name: f"{value:.3f}" for name, value in self.means().items()}
