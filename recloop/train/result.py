"""What a fit reports: one :class:`EpochRecord` per epoch and the :class:`TrainResult`
that gathers them with where the best epoch was and why training stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class EpochRecord:
    """What happened in one epoch. ``metric`` is ``None`` when it did not validate."""

    epoch: int
    loss: float
    lr: float
    train_seconds: float
    valid_seconds: float = 0.0
    metric: float | None = None
    elapsed: float = 0.0  # seconds since fit() started, at the end of this epoch
    train_cpu_seconds: float = 0.0  # CPU time of this process in training (all threads): on a shared
    # machine, wall time depends on the other load and CPU time much less


@dataclass
class TrainResult:
    """The course of a ``fit``: per-epoch records and where the best epoch was."""

    history: list[EpochRecord] = field(default_factory=list)
    metric: str | None = None
    best_epoch: int = 0
    best_metric: float | None = None
    seconds_to_best: float = 0.0
    seconds: float = 0.0
    stopped: str = "max_epochs"  # max_epochs | early_stopping | time_budget
    steps: int = 0
    privacy: dict | None = None  # DP-SGD: PrivacyReport.to_dict() (epsilon spent at delta, ...)

    @property
    def seconds_per_epoch(self) -> float:
        """Median training seconds of one epoch (validation excluded)."""
        return float(np.median([r.train_seconds for r in self.history])) if self.history else 0.0

    @property
    def cpu_seconds_per_epoch(self) -> float:
        """Median CPU seconds (all threads of this process) of one training epoch."""
        return float(np.median([r.train_cpu_seconds for r in self.history])) if self.history else 0.0

    def to_dict(self) -> dict:
        return {"metric": self.metric, "best_epoch": self.best_epoch, "best_metric": self.best_metric,
                "seconds_to_best": self.seconds_to_best, "seconds": self.seconds, "stopped": self.stopped,
                "steps": self.steps, "seconds_per_epoch": self.seconds_per_epoch, "privacy": self.privacy,
                "cpu_seconds_per_epoch": self.cpu_seconds_per_epoch,
                "history": [asdict(r) for r in self.history]}
