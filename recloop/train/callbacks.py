"""The trainer's hooks and the work that plugs into them.

A :class:`Callback` is called at five points of :meth:`Trainer.fit
<recloop.train.Trainer.fit>`, always with the trainer and the :class:`FitState` of the fit
in progress::

    on_fit_start(trainer, state)                  after the optimiser exists, before epoch 1
    on_epoch_start(trainer, state)                state.epoch, state.epoch_steps are set
    on_step_end(trainer, state, step, loss)       after each optimiser step; loss is a float
    on_epoch_end(trainer, state, record)          record validated and in state.result.history
    on_fit_end(trainer, state)                    after the last epoch (not after an error)

The trainer runs its own callbacks, made from its :class:`~recloop.train.TrainerConfig`,
before the caller's, in this order: :class:`EarlyStopping` (always; it keeps the best
weights), :class:`TimeBudget` (``max_minutes``), :class:`Checkpoint` (``checkpoint_dir``),
and on rank 0 :class:`TensorBoard` (``tensorboard_dir``) and :class:`Progress`. The order
matters at an epoch's end: the stop decision is made before the checkpoint records it.
A callback stops training with :meth:`FitState.request_stop`; the epoch in progress still
ends (every callback sees it), then the loop breaks.

A plain function ``f(trainer, record)`` passed as a callback is called at each epoch's end.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from recloop.errors import ConfigError, TrainingError
from recloop.progress import progress_bar
from recloop.train import distributed as D
from recloop.train.result import EpochRecord, TrainResult

if TYPE_CHECKING:
    from recloop.train.trainer import Trainer

CHECKPOINT_VERSION = 1
log = logging.getLogger("recloop.train")  # one INFO line per epoch (rank 0), for logs of long runs


@dataclass
class FitState:
    """Everything a fit changes as it goes, shared by the loop and its callbacks; what a
    checkpoint saves and a resumed run restores."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 mixed precision only
    result: TrainResult
    start: float  # time.perf_counter() when fit started (earlier by a resumed run's elapsed time)
    first_epoch: int = 1  # later when resumed
    epoch: int = 0  # the epoch in progress
    epoch_steps: int = 0  # optimiser steps in this epoch (on this rank)
    stop: str = ""  # why training stops after this epoch ("" while it goes on)
    best_weights: dict[str, torch.Tensor] | None = None  # EarlyStopping's copy of the best epoch's weights
    bad_rounds: int = 0  # validations since the best one
    private: Any = None  # recloop.train.privacy.PrivateTraining when training with DP-SGD

    def request_stop(self, reason: str) -> None:
        """Stop after the epoch in progress; the first reason given is the one reported."""
        if not self.stop:
            self.stop = self.result.stopped = reason


class Callback:
    """Base class of the trainer's callbacks: override the hooks you need."""

    def on_fit_start(self, trainer: Trainer, state: FitState) -> None:
        """Before the first epoch (after a resume has restored ``state``)."""

    def on_epoch_start(self, trainer: Trainer, state: FitState) -> None:
        """Before the first step of ``state.epoch``."""

    def on_step_end(self, trainer: Trainer, state: FitState, step: int, loss: float) -> None:
        """After optimiser step ``step`` (from 0 in each epoch) whose batch loss was ``loss``."""

    def on_epoch_end(self, trainer: Trainer, state: FitState, record: EpochRecord) -> None:
        """After ``record`` (validated when due) was appended to ``state.result.history``."""

    def on_fit_end(self, trainer: Trainer, state: FitState) -> None:
        """After the last epoch; the network is put in eval mode next."""


class EpochEndFunction(Callback):
    """A function ``f(trainer, record)`` called at each epoch's end."""

    def __init__(self, function: Callable[[Trainer, EpochRecord], Any]):
        self.function = function

    def on_epoch_end(self, trainer: Trainer, state: FitState, record: EpochRecord) -> None:
        self.function(trainer, record)


class CallbackList(Callback):
    """Several callbacks called in order; plain functions become :class:`EpochEndFunction`."""

    def __init__(self, callbacks: Iterable[Callback | Callable[[Trainer, EpochRecord], Any]]):
        self.callbacks: list[Callback] = []
        for callback in callbacks:
            if not isinstance(callback, Callback):
                if not callable(callback):
                    raise ConfigError(f"a trainer callback must be a Callback or a function (trainer, record); "
                                      f"got {type(callback).__name__}")
                callback = EpochEndFunction(callback)
            self.callbacks.append(callback)

    def on_fit_start(self, trainer, state):
        for callback in self.callbacks:
            callback.on_fit_start(trainer, state)

    def on_epoch_start(self, trainer, state):
        for callback in self.callbacks:
            callback.on_epoch_start(trainer, state)

    def on_step_end(self, trainer, state, step, loss):
        for callback in self.callbacks:
            callback.on_step_end(trainer, state, step, loss)

    def on_epoch_end(self, trainer, state, record):
        for callback in self.callbacks:
            callback.on_epoch_end(trainer, state, record)

    def on_fit_end(self, trainer, state):
        for callback in self.callbacks:
            callback.on_fit_end(trainer, state)


class EarlyStopping(Callback):
    """Keep the weights of the best validation, stop after ``patience`` validations without
    improvement (0: never stop early), and put the best weights back at the end.

    The best epoch is the one with the highest ``record.metric``; without validation
    (``state.result.metric`` is None) it is the last epoch, and the last weights stay.
    """

    def __init__(self, patience: int = 0):
        self.patience = patience

    def on_epoch_end(self, trainer, state, record):
        result = state.result
        if record.metric is None:
            if result.metric is None:  # no validation at all
                result.best_epoch, result.seconds_to_best = record.epoch, record.elapsed
            return
        if result.best_metric is None or record.metric > result.best_metric:
            result.best_metric, result.best_epoch, result.seconds_to_best = record.metric, record.epoch, record.elapsed
            state.best_weights = {k: v.detach().clone() for k, v in state.network.state_dict().items()}
            state.bad_rounds = 0
        else:
            state.bad_rounds += 1
            if self.patience and state.bad_rounds >= self.patience:
                state.request_stop("early_stopping")

    def on_fit_end(self, trainer, state):
        if state.best_weights is not None:
            state.network.load_state_dict(state.best_weights)


class TimeBudget(Callback):
    """Stop at the first epoch end after ``minutes`` of training (rank 0's clock decides)."""

    def __init__(self, minutes: float):
        self.minutes = minutes

    def on_epoch_end(self, trainer, state, record):
        if self.minutes and not state.stop:
            (over,) = D.broadcast_floats([float(record.elapsed > self.minutes * 60)], trainer.distributed,
                                         trainer.device)
            if over:
                state.request_stop("time_budget")


class ReportValidation(Callback):
    """Hand every validation to ``report(epoch, metric) -> bool`` and stop training (reason
    ``"pruned"``) when it returns True: how a tuner follows a trial's validation curve and
    prunes it (:mod:`recloop.tune` reports to an Optuna trial and asks ``should_prune``).
    Epochs without validation are not reported. ``pruned`` tells afterwards whether a
    report said to stop (also when early stopping had stopped the same epoch first). Rank
    0 reports; every rank stops."""

    def __init__(self, report: Callable[[int, float], bool]):
        self.report = report
        self.pruned = False

    def on_epoch_end(self, trainer, state, record):
        if record.metric is None:
            return
        prune = bool(self.report(record.epoch, record.metric)) if trainer.distributed.is_main else False
        (prune,) = D.broadcast_floats([float(prune)], trainer.distributed, trainer.device)
        if prune:
            self.pruned = True
            state.request_stop("pruned")


class Checkpoint(Callback):
    """After every epoch, write ``last.pt`` into ``folder`` (everything needed to resume:
    weights, optimiser, schedule, scaler, RNG, history, early-stopping counters) and, when
    the epoch was the best so far, ``best.pt`` (its weights). With ``resume``, a fit starts
    from ``last.pt`` when it exists and continues as the interrupted run would have.
    Every rank resumes; only rank 0 writes."""

    def __init__(self, folder: str | Path, resume: bool = False):
        self.folder = Path(folder)
        self.resume = resume

    def on_fit_start(self, trainer, state):
        last = self.folder / "last.pt"
        if not (self.resume and last.is_file()):
            return
        saved = load_checkpoint(last, trainer.device)
        state.network.load_state_dict(saved["network"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        if state.scaler is not None and saved.get("scaler"):
            state.scaler.load_state_dict(saved["scaler"])
        _set_rng_state(saved["rng"])
        result = state.result
        result.history = [EpochRecord(**r) for r in saved["history"]]
        result.best_epoch, result.best_metric = saved["best_epoch"], saved["best_metric"]
        result.seconds_to_best, result.steps = saved["seconds_to_best"], saved["steps"]
        state.bad_rounds, state.first_epoch = saved["bad_rounds"], saved["epoch"] + 1
        state.start -= saved["elapsed"]
        if (self.folder / "best.pt").is_file():
            state.best_weights = load_checkpoint(self.folder / "best.pt", trainer.device)["network"]
        if saved.get("finished"):
            state.first_epoch = trainer.config.epochs + 1
            result.stopped = saved.get("stopped", result.stopped)

    def on_epoch_end(self, trainer, state, record):
        if not trainer.distributed.is_main:
            return
        result = state.result
        self.folder.mkdir(parents=True, exist_ok=True)
        if state.best_weights is not None and result.best_epoch == record.epoch:  # improved in this epoch
            _atomic_save({"version": CHECKPOINT_VERSION, "network": state.best_weights, "epoch": record.epoch,
                          "metric": result.best_metric}, self.folder / "best.pt")
        _atomic_save({
            "version": CHECKPOINT_VERSION, "epoch": record.epoch, "network": state.network.state_dict(),
            "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None, "rng": _rng_state(),
            "history": [asdict(r) for r in result.history], "best_epoch": result.best_epoch,
            "best_metric": result.best_metric, "seconds_to_best": result.seconds_to_best, "steps": result.steps,
            "bad_rounds": state.bad_rounds, "elapsed": record.elapsed,
            "finished": bool(state.stop) or record.epoch == trainer.config.epochs,
            "stopped": result.stopped, "config": asdict(trainer.config),
        }, self.folder / "last.pt")


class TensorBoard(Callback):
    """Write the loss, the learning rate and the validation metric of each epoch as
    TensorBoard scalars into ``folder``; warn and write nothing without the ``tensorboard``
    package."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)
        self.writer = None

    def on_fit_start(self, trainer, state):
        self.writer = _summary_writer(self.folder)

    def on_epoch_end(self, trainer, state, record):
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", record.loss, record.epoch)
        self.writer.add_scalar("train/lr", record.lr, record.epoch)
        if record.metric is not None:
            self.writer.add_scalar(f"valid/{state.result.metric}", record.metric, record.epoch)

    def on_fit_end(self, trainer, state):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Progress(Callback):
    """Progress bars, when ``bar`` and :mod:`recloop.progress` allows them (switched on, as
    the CLI does unless ``--quiet``, and stderr a terminal): the epochs with the loss, the validation metric and the
    best so far, and the steps of the epoch in progress; and, always, one INFO line per
    epoch on the ``recloop.train`` logger."""

    def __init__(self, bar: bool = True):
        self.bar = bar
        self._epochs = self._steps = None

    def on_fit_start(self, trainer, state):
        self._epochs = progress_bar(desc=f"train {trainer.name}", wanted=self.bar, initial=state.first_epoch - 1,
                                    total=trainer.config.epochs, unit="epoch")

    def on_epoch_start(self, trainer, state):
        self._steps = progress_bar(desc=f"epoch {state.epoch}", wanted=self.bar, total=state.epoch_steps,
                                   unit="step")

    def on_step_end(self, trainer, state, step, loss):
        if step % 20 == 0:
            self._steps.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self._steps.update()

    def on_epoch_end(self, trainer, state, record):
        self._steps.close()
        result, metric = state.result, trainer.config.metric
        self._epochs.set_postfix(loss=f"{record.loss:.4f}",
                                 **({metric: f"{record.metric:.4f}"} if record.metric is not None else {}),
                                 **({"best": f"{result.best_metric:.4f}@{result.best_epoch}"}
                                    if result.best_metric is not None else {}), refresh=False)
        self._epochs.update()
        log.info("%s epoch %d: loss %.4f, lr %.2e, train %.1fs (cpu %.1fs)%s", trainer.name, record.epoch,
                 record.loss, record.lr, record.train_seconds, record.train_cpu_seconds, "" if record.metric is None
                 else f", valid {metric} {record.metric:.4f} ({record.valid_seconds:.1f}s), best "
                 f"{result.best_metric:.4f}@{result.best_epoch}")

    def on_fit_end(self, trainer, state):
        self._epochs.close()


# --- checkpoint files -------------------------------------------------------------------------
def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by the trainer (tensors and plain values only)."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever torch.load raises, the file is unusable
        raise TrainingError(f"cannot read checkpoint {path}: {error}; delete it or set train.resume = false") from None
    if saved.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"checkpoint {path} has version {saved.get('version')}, expected {CHECKPOINT_VERSION}")
    return saved


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _summary_writer(folder: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("train.tensorboard_dir is set but the tensorboard package is not installed; "
                      "no TensorBoard logs are written (pip install tensorboard)", stacklevel=2)
        return None
    return SummaryWriter(folder)
