"""When topology changes happen: the neuron-pruning schedule of NPSET."""

from __future__ import annotations

from keras_npset.topology import neurons_to_remove
from keras_npset.validation import check_fraction, check_int


class PruningSchedule:
    """Epochs at whose beginning neurons are pruned.

    Pruning happens at the beginning of every epoch `e` with
    `start <= e <= start + epochs` (0-based epoch indices, as Keras counts
    them): `epochs + 1` events in all. With the paper's beta = 10 and
    gamma = 40 that is 41 events, at the beginning of epochs 10 to 50, after
    10 epochs of plain SET training; this reproduces the neuron counts of the
    NPSET paper's Table 3 exactly (7000 -> 1320 per layer at alpha = 0.04).

    Args:
        start: index of the first pruning epoch (beta in the paper).
            Defaults to `10`.
        epochs: number of further pruning epochs after the first (gamma in
            the paper). Defaults to `40`.

    Example:

    >>> PruningSchedule(start=2, epochs=3).events(10)
    [2, 3, 4, 5]
    """

    def __init__(self, start: int = 10, epochs: int = 40):
        self.start = check_int("start", start, 0)
        self.epochs = check_int("epochs", epochs, 0)

    def __call__(self, epoch: int) -> bool:
        """Whether neurons are pruned at the beginning of `epoch`."""
        return self.start <= epoch <= self.start + self.epochs

    def last_event(self, total_epochs: int | None = None) -> int:
        """The last pruning epoch, within a run of `total_epochs` epochs if given.

        Below `start` when the run ends before the first event.
        """
        last = self.start + self.epochs
        if total_epochs is None:
            return last
        return min(last, check_int("total_epochs", total_epochs, 0) - 1)

    def events(self, total_epochs: int) -> list[int]:
        """The pruning epochs within a run of `total_epochs` epochs."""
        total_epochs = check_int("total_epochs", total_epochs, 0)  # None is not a run length
        return list(range(self.start, self.last_event(total_epochs) + 1))

    def get_config(self) -> dict:
        return {"start": self.start, "epochs": self.epochs}

    @classmethod
    def from_config(cls, config: dict) -> PruningSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        return f"PruningSchedule(start={self.start}, epochs={self.epochs})"


def final_width(units: int, alpha: float, n_events: int, min_units: int = 1) -> int:
    """Width of a layer after `n_events` removals of `floor(alpha * n)` neurons.

    >>> final_width(7000, 0.04, 41)
    1320
    """
    units = check_int("units", units, 1)
    n_events = check_int("n_events", n_events, 0)
    min_units = check_int("min_units", min_units, 1)
    check_fraction("alpha", alpha)
    for _ in range(n_events):
        units -= neurons_to_remove(units, alpha, min_units)
    return units
