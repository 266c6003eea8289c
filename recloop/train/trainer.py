"""One generic training loop for every neural model of recloop.

The :class:`Trainer` owns what all models share: the epoch loop, AdamW with warm-up and
a decay schedule, gradient clipping, mixed precision on GPU, early stopping on a
full-ranking validation metric with restore of the best weights, resumable checkpoints,
seeded shuffling, data-parallel training and progress output; early stopping, checkpoints,
the time budget, TensorBoard and progress are callbacks on the loop's hooks
(:mod:`recloop.train.callbacks`), and callers add their own. What differs between
models lives in the model: the network, how examples become tensors, and the loss.
So a model hands the trainer three things::

    trainer = Trainer(TrainerConfig(epochs=50, lr=1e-3))
    result = trainer.fit(network, loss, data, validate=validate)

* ``network``: the ``torch.nn.Module`` whose parameters are trained.
* ``loss(batch) -> Tensor``: a scalar computed with ``network``; model quirks
  (sampled negatives, masking, regularisers) go here, never in a trainer subclass.
* ``data``: a :class:`TrainData`: ``len(data)`` examples, ``data.batch(indices)``
  collates some of them into (CPU) tensors, optional ``data.lengths`` for bucketing.
* ``validate() -> float``: optional, higher is better; called on rank 0 (on every rank
  when the data is split by user: each evaluates its own users) with the network in
  eval mode and gradients off (a model computes its ``metric`` with the core
  :class:`~recloop.evaluate.Evaluator`, ranking all items).

After ``fit`` the network holds the weights of the best validation (or the last epoch
without validation) and is in eval mode, on the training device.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from recloop.errors import ConfigError, TrainingError
from recloop.train import distributed as D
from recloop.train.callbacks import (
    Callback,
    CallbackList,
    Checkpoint,
    EarlyStopping,
    FitState,
    Progress,
    TensorBoard,
    TimeBudget,
)
from recloop.train.config import TrainerConfig
from recloop.train.privacy import PrivateTraining
from recloop.train.result import EpochRecord, TrainResult
from recloop.train.sampler import epoch_batches, shard_batches, shard_steps


@runtime_checkable
class TrainData(Protocol):
    """Training examples as the trainer sees them."""

    def __len__(self) -> int:
        """Number of examples."""

    def batch(self, index: np.ndarray) -> Any:
        """Collate the examples ``index`` into tensors (or dicts/tuples of tensors)."""


class _LossModule(nn.Module):
    """Runs ``loss(batch)`` as this module's forward, so DDP sees the forward pass of the
    network's parameters (it needs that to average their gradients)."""

    def __init__(self, network: nn.Module, loss: Callable[[Any], torch.Tensor]):
        super().__init__()
        self.network = network
        self.loss = loss

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss(batch)


class Trainer:
    """Trains a network with the settings of a :class:`TrainerConfig`.

    Parameters
    ----------
    config:
        The training hyperparameters.
    name:
        What to call the run in progress bars and messages (the model's name).
    distributed:
        The data-parallel context; by default the process-wide one set by
        :func:`recloop.train.distributed.setup` (a single process otherwise).
    """

    def __init__(self, config: TrainerConfig | None = None, *, name: str = "model",
                 distributed: D.DistributedContext | None = None, privacy_unit: str = "example"):
        self.config = config or TrainerConfig()
        self.name = name
        self.privacy_unit = privacy_unit  # what one row of the training data is (for the DP report)
        self.distributed = distributed or D.current()
        self.device = resolve_device(self.config.device, self.distributed)
        self.result = TrainResult()

    # --- the loop -----------------------------------------------------------------------------
    def fit(self, network: nn.Module, loss: Callable[[Any], torch.Tensor], data: TrainData,
            validate: Callable[[], float] | None = None,
            callbacks: Sequence[Callback | Callable[[Trainer, EpochRecord], Any]] = ()) -> TrainResult:
        """Train ``network`` by minimising ``loss`` over ``data``; see the module docstring.
        ``callbacks`` run after the trainer's own (see :mod:`recloop.train.callbacks`)."""
        if not isinstance(data, TrainData):
            raise ConfigError(f"{self.name}: training data must have __len__ and batch(index); got {type(data).__name__}")
        if len(data) == 0:
            raise ConfigError(f"{self.name}: there are no training examples (is the training log empty?)")
        threads = _thread_setting(self.config.num_threads if self.device.type == "cpu" else 0)
        start = time.perf_counter()
        try:
            return self._fit(network, loss, data, validate, CallbackList([*self._own_callbacks(), *callbacks]), start)
        finally:
            threads.close()

    def _fit(self, network, loss, data, validate, hooks: CallbackList, start: float) -> TrainResult:
        cfg = self.config
        state, forward = self._prepare(network, loss, len(data), validate is not None, start)
        hooks.on_fit_start(self, state)
        for epoch in range(state.first_epoch, cfg.epochs + 1):
            state.epoch = epoch
            record = self._train_epoch(state, forward, data, hooks)
            if validate is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                self._validate(state, record, validate)
            record.elapsed = time.perf_counter() - state.start
            state.result.history.append(record)
            hooks.on_epoch_end(self, state, record)
            if state.stop:
                break
        hooks.on_fit_end(self, state)
        if state.private is not None:
            state.result.privacy = state.private.report().to_dict()
            state.private.close()
        network.eval()
        state.result.seconds = time.perf_counter() - state.start
        return state.result

    # --- pieces -------------------------------------------------------------------------------
    def _own_callbacks(self) -> list[Callback]:
        """The callbacks the config asks for, in the order their epoch-end work must run."""
        cfg, main = self.config, self.distributed.is_main
        own: list[Callback] = [EarlyStopping(cfg.patience)]
        if cfg.max_minutes:
            own.append(TimeBudget(cfg.max_minutes))
        if cfg.checkpoint_dir:
            own.append(Checkpoint(cfg.checkpoint_dir, resume=cfg.resume))
        if main and cfg.tensorboard_dir:
            own.append(TensorBoard(cfg.tensorboard_dir))
        if main:
            own.append(Progress(bar=cfg.progress))
        return own

    def _prepare(self, network: nn.Module, loss, n_examples: int, validating: bool, start: float):
        """The fit's state and ``forward(batch) -> loss``: the network on the device (in DDP
        when distributed), AdamW, the schedule and mixed precision."""
        cfg, ctx, device = self.config, self.distributed, self.device
        network.to(device)
        wrapper = _LossModule(network, loss)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # static_graph: the same parameters take part in every step, and some never do
            # (two-tower's inputs that are switched off), which DDP must know not to wait for.
            wrapper = DistributedDataParallel(wrapper, device_ids=[device.index] if device.type == "cuda" else None,
                                              static_graph=True)
            if ctx.rank > 0:  # different dropout masks per rank; rank 0 matches a single process
                torch.manual_seed(cfg.seed + 7919 * ctx.rank)
        optimizer = make_optimizer(network, cfg)
        if ctx.shard_data:  # each rank's own examples: all ranks run the steps of the one with the most
            self._shard_steps = D.max_across(shard_steps(n_examples, cfg.batch_size, ctx.world_size), ctx)
            steps_per_epoch = self._shard_steps
        else:
            steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps_per_epoch * cfg.epochs))
        private = None
        if cfg.privacy.enabled:
            if ctx.enabled:
                raise ConfigError(f"{self.name}: train.privacy does not support distributed training; run one process")
            private = PrivateTraining(cfg.privacy, network, optimizer, rows=n_examples, batch_size=cfg.batch_size,
                                      steps=steps_per_epoch * cfg.epochs, seed=cfg.seed, unit=self.privacy_unit)
        autocast, scaler = self._precision() if private is None else (contextlib.nullcontext, None)
        self.result = TrainResult(metric=cfg.metric if validating else None)
        state = FitState(network, optimizer, scheduler, scaler, self.result, start)
        state.private = private

        def forward(batch: Any) -> torch.Tensor:
            with autocast():
                return wrapper(batch)

        return state, forward

    def _train_epoch(self, state: FitState, forward, data: TrainData, hooks: CallbackList) -> EpochRecord:
        """One pass over this rank's share of ``data``, in seeded batches."""
        cfg, ctx = self.config, self.distributed
        state.network.train()
        started, cpu_started = time.perf_counter(), time.process_time()
        lengths = getattr(data, "lengths", None)
        if state.private is not None:  # DP-SGD: Poisson samples, as the accountant assumes
            batches = state.private.batches(math.ceil(len(data) / cfg.batch_size))
        elif ctx.shard_data:
            batches = shard_batches(len(data), cfg.batch_size, epoch=state.epoch, seed=cfg.seed, rank=ctx.rank,
                                    world_size=ctx.world_size, steps=self._shard_steps, lengths=lengths)
        else:
            batches = epoch_batches(len(data), cfg.batch_size, epoch=state.epoch, seed=cfg.seed, rank=ctx.rank,
                                    world_size=ctx.world_size, lengths=lengths)
        state.epoch_steps = len(batches)
        hooks.on_epoch_start(self, state)
        loss_sum = 0.0
        for step, index in enumerate(batches):
            if len(index) == 0:  # an empty Poisson sample: no update, the accountant still counts it
                state.private.count_empty_step()
                continue
            value = self._step(state, forward(to_device(data.batch(index), self.device)), step)
            loss_sum += value
            hooks.on_step_end(self, state, step, value)
        return EpochRecord(state.epoch, loss_sum / max(1, len(batches)), state.optimizer.param_groups[0]["lr"],
                           time.perf_counter() - started, train_cpu_seconds=time.process_time() - cpu_started)

    def _step(self, state: FitState, loss: torch.Tensor, step: int) -> float:
        """One optimiser step on ``loss``; stops every rank when any rank's loss is not finite."""
        scalar = float(loss.detach())
        if D.any_true(not math.isfinite(scalar), self.distributed, self.device):
            raise TrainingError(self._diverged_message(scalar, state.epoch, step))
        optimizer, scaler = state.optimizer, state.scaler
        if state.private is not None:  # DP-SGD: per-row clipping and noise replace the global clip
            state.private.optimizer.zero_grad(set_to_none=True)  # also drops the per-row gradients
            loss.backward()
            state.private.step()
        else:
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(state.network.parameters(), self.config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        state.scheduler.step()
        state.result.steps += 1
        return scalar

    def _validate(self, state: FitState, record: EpochRecord, validate: Callable[[], float]) -> None:
        """``record.metric``: rank 0 validates in eval mode without gradients; all ranks get its
        value. With the data split by user every rank validates (its own users; the
        evaluator gathers the metric onto every rank)."""
        started = time.perf_counter()
        metric = float("nan")
        if self.distributed.is_main or self.distributed.shard_data:
            state.network.eval()
            with torch.no_grad():
                metric = float(validate())
            state.network.train()
        (record.metric,) = D.broadcast_floats([metric], self.distributed, self.device)
        record.valid_seconds = time.perf_counter() - started

    def _precision(self):
        """(autocast context factory, GradScaler or None): mixed precision on CUDA only."""
        cfg = self.config
        if self.device.type != "cuda" or not cfg.amp:
            return contextlib.nullcontext, None
        use_bf16 = cfg.amp_dtype == "bf16" or (cfg.amp_dtype == "auto" and torch.cuda.is_bf16_supported())
        dtype = torch.bfloat16 if use_bf16 else torch.float16
        scaler = None if use_bf16 else torch.amp.GradScaler("cuda")
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler

    def _diverged_message(self, value: float, epoch: int, step: int) -> str:
        folder = Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        where = (f"the last good checkpoint (epoch {epoch - 1}) is kept in {folder / 'last.pt'}"
                 if folder is not None and (folder / "last.pt").is_file()
                 else "set train.checkpoint_dir to keep checkpoints")
        return (f"{self.name}: training loss became {value} at epoch {epoch}, step {step}; training stopped and "
                f"{where}. Lower train.lr, keep train.grad_clip > 0, or turn off train.amp")


# --- helpers --------------------------------------------------------------------------------------
def resolve_device(name: str, context: D.DistributedContext | None = None) -> torch.device:
    """``auto`` is CUDA when available (this rank's GPU when distributed), else CPU."""
    context = context or D.DistributedContext()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'auto' or 'cpu'")
        if name == "cuda":
            name = f"cuda:{context.local_rank if context.enabled else torch.cuda.current_device()}"
    return torch.device(name)


def make_optimizer(network: nn.Module, config: TrainerConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings only (not biases, norms), as nanoGPT."""
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the network has no trainable parameters")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def lr_lambda(config: TrainerConfig, total_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier by step: linear warm-up, then the configured decay."""
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if config.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside a batch (tensor, dict, list or tuple) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class _thread_setting:
    """Set ``torch.set_num_threads`` for the duration of a fit; 0 leaves it alone."""

    def __init__(self, threads: int):
        self.previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def close(self) -> None:
        torch.set_num_threads(self.previous)
