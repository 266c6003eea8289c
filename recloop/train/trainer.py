"""One generic training loop for every neural model of recloop.

The :class:`Trainer` owns what all models share: the epoch loop, AdamW with warm-up and
a decay schedule, gradient clipping, mixed precision on GPU, early stopping on a
full-ranking validation metric with restore of the best weights, resumable checkpoints,
seeded shuffling, data-parallel training and progress output. What differs between
models lives in the model: the network, how examples become tensors, and the loss.
So a model hands the trainer three things::

    trainer = Trainer(TrainerConfig(epochs=50, lr=1e-3))
    result = trainer.fit(network, loss, data, validate=validate)

* ``network``: the ``torch.nn.Module`` whose parameters are trained.
* ``loss(batch) -> Tensor``: a scalar computed with ``network``; model quirks
  (sampled negatives, masking, regularisers) go here, never in a trainer subclass.
* ``data``: a :class:`TrainData`: ``len(data)`` examples, ``data.batch(indices)``
  collates some of them into (CPU) tensors, optional ``data.lengths`` for bucketing.
* ``validate() -> float``: optional, higher is better; called on rank 0 with the
  network in eval mode and gradients off (a model computes its ``metric`` with the core
  :class:`~recloop.evaluate.Evaluator`, ranking all items).

After ``fit`` the network holds the weights of the best validation (or the last epoch
without validation) and is in eval mode, on the training device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from recloop.errors import ConfigError, TrainingError
from recloop.train import distributed as D
from recloop.train.config import TrainerConfig
from recloop.train.sampler import epoch_batches

CHECKPOINT_VERSION = 1
log = logging.getLogger("recloop.train")  # one INFO line per epoch (rank 0), for logs of long runs


@runtime_checkable
class TrainData(Protocol):
    """Training examples as the trainer sees them."""

    def __len__(self) -> int:
        """Number of examples."""

    def batch(self, index: np.ndarray) -> Any:
        """Collate the examples ``index`` into tensors (or dicts/tuples of tensors)."""


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
                "steps": self.steps, "seconds_per_epoch": self.seconds_per_epoch,
                "cpu_seconds_per_epoch": self.cpu_seconds_per_epoch,
                "history": [asdict(r) for r in self.history]}


Callback = Callable[["Trainer", EpochRecord], None]


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
                 distributed: D.DistributedContext | None = None):
        self.config = config or TrainerConfig()
        self.name = name
        self.distributed = distributed or D.current()
        self.device = resolve_device(self.config.device, self.distributed)
        self.result = TrainResult()

    # --- the loop -----------------------------------------------------------------------------
    def fit(self, network: nn.Module, loss: Callable[[Any], torch.Tensor], data: TrainData,
            validate: Callable[[], float] | None = None, callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Train ``network`` by minimising ``loss`` over ``data``; see the module docstring."""
        cfg, device = self.config, self.device
        if not isinstance(data, TrainData):
            raise ConfigError(f"{self.name}: training data must have __len__ and batch(index); got {type(data).__name__}")
        n_examples = len(data)
        if n_examples == 0:
            raise ConfigError(f"{self.name}: there are no training examples (is the training log empty?)")
        threads = _thread_setting(cfg.num_threads if device.type == "cpu" else 0)
        start = time.perf_counter()
        try:
            return self._fit(network, loss, data, validate, callbacks, n_examples, start)
        finally:
            threads.close()

    def _fit(self, network, loss, data, validate, callbacks, n_examples, start) -> TrainResult:
        cfg, ctx, device = self.config, self.distributed, self.device
        main = ctx.is_main
        network.to(device)
        wrapper = _LossModule(network, loss)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            wrapper = DistributedDataParallel(wrapper, device_ids=[device.index] if device.type == "cuda" else None)
            if ctx.rank > 0:  # different dropout masks per rank; rank 0 matches a single process
                torch.manual_seed(cfg.seed + 7919 * ctx.rank)
        optimizer = make_optimizer(network, cfg)
        steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps_per_epoch * cfg.epochs))
        autocast, scaler = self._precision()
        lengths = getattr(data, "lengths", None)

        result = TrainResult(metric=cfg.metric if validate is not None else None)
        self.result = result
        best_state: dict[str, torch.Tensor] | None = None
        bad_rounds, first_epoch = 0, 1
        checkpoints = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if cfg.resume and checkpoints is not None and (checkpoints / "last.pt").is_file():
            saved = load_checkpoint(checkpoints / "last.pt", device)
            network.load_state_dict(saved["network"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            _set_rng_state(saved["rng"])
            result.history = [EpochRecord(**r) for r in saved["history"]]
            result.best_epoch, result.best_metric = saved["best_epoch"], saved["best_metric"]
            result.seconds_to_best, result.steps = saved["seconds_to_best"], saved["steps"]
            bad_rounds, first_epoch = saved["bad_rounds"], saved["epoch"] + 1
            start -= saved["elapsed"]
            if (checkpoints / "best.pt").is_file():
                best_state = load_checkpoint(checkpoints / "best.pt", device)["network"]
            if saved.get("finished"):
                first_epoch = cfg.epochs + 1
                result.stopped = saved.get("stopped", result.stopped)
        writer = _tensorboard(cfg.tensorboard_dir) if main else None

        epochs = tqdm(range(first_epoch, cfg.epochs + 1), desc=f"train {self.name}", disable=not (cfg.progress and main),
                      initial=first_epoch - 1, total=cfg.epochs)
        last_good_epoch = first_epoch - 1
        for epoch in epochs:
            network.train()
            epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
            batches = epoch_batches(n_examples, cfg.batch_size, epoch=epoch, seed=cfg.seed, rank=ctx.rank,
                                    world_size=ctx.world_size, lengths=lengths)
            loss_sum = 0.0
            steps = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not (cfg.progress and main))
            for step, index in enumerate(steps):
                batch = to_device(data.batch(index), device)
                with autocast():
                    value = wrapper(batch)
                scalar = float(value.detach())
                if D.any_true(not math.isfinite(scalar), ctx, device):
                    raise TrainingError(self._diverged_message(scalar, epoch, step, last_good_epoch, checkpoints))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(value).backward()
                    scaler.unscale_(optimizer)
                else:
                    value.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                result.steps += 1
                loss_sum += scalar
                if step % 20 == 0:
                    steps.set_postfix(loss=f"{scalar:.4f}", refresh=False)
            record = EpochRecord(epoch, loss_sum / max(1, len(batches)), optimizer.param_groups[0]["lr"],
                                 time.perf_counter() - epoch_start, train_cpu_seconds=time.process_time() - epoch_cpu)
            last_good_epoch = epoch

            stop = ""
            improved = False
            if validate is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                valid_start = time.perf_counter()
                metric = float("nan")
                if main:
                    network.eval()
                    with torch.no_grad():
                        metric = float(validate())
                    network.train()
                (metric,) = D.broadcast_floats([metric], ctx, device)
                record.metric = metric
                record.valid_seconds = time.perf_counter() - valid_start
                if result.best_metric is None or metric > result.best_metric:
                    improved = True
                    result.best_metric, result.best_epoch = metric, epoch
                    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                    bad_rounds = 0
                else:
                    bad_rounds += 1
                    if cfg.patience and bad_rounds >= cfg.patience:
                        stop = "early_stopping"
            elif validate is None:
                result.best_epoch = epoch
            record.elapsed = time.perf_counter() - start
            if improved or validate is None:
                result.seconds_to_best = record.elapsed
            result.history.append(record)
            if cfg.max_minutes and not stop:
                (over,) = D.broadcast_floats([float(record.elapsed > cfg.max_minutes * 60)], ctx, device)
                stop = "time_budget" if over else ""
            if stop or epoch == cfg.epochs:
                result.stopped = stop or "max_epochs"
            if main and checkpoints is not None:
                self._save(checkpoints, network, optimizer, scheduler, scaler, result, epoch, bad_rounds,
                           best_state if improved else None, finished=bool(stop) or epoch == cfg.epochs)
            if writer is not None:
                writer.add_scalar("train/loss", record.loss, epoch)
                writer.add_scalar("train/lr", record.lr, epoch)
                if record.metric is not None:
                    writer.add_scalar(f"valid/{cfg.metric}", record.metric, epoch)
            epochs.set_postfix(loss=f"{record.loss:.4f}",
                               **({cfg.metric: f"{record.metric:.4f}"} if record.metric is not None else {}),
                               **({"best": f"{result.best_metric:.4f}@{result.best_epoch}"}
                                  if result.best_metric is not None else {}))
            if main:
                log.info("%s epoch %d: loss %.4f, lr %.2e, train %.1fs (cpu %.1fs)%s", self.name, epoch, record.loss,
                         record.lr, record.train_seconds, record.train_cpu_seconds, "" if record.metric is None else
                         f", valid {cfg.metric} {record.metric:.4f} ({record.valid_seconds:.1f}s), best "
                         f"{result.best_metric:.4f}@{result.best_epoch}")
            for callback in callbacks:
                callback(self, record)
            if stop:
                break
        epochs.close()
        if writer is not None:
            writer.close()
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        result.seconds = time.perf_counter() - start
        return result

    # --- pieces -------------------------------------------------------------------------------
    def _precision(self):
        """(autocast context factory, GradScaler or None): mixed precision on CUDA only."""
        cfg = self.config
        if self.device.type != "cuda" or not cfg.amp:
            return contextlib.nullcontext, None
        use_bf16 = cfg.amp_dtype == "bf16" or (cfg.amp_dtype == "auto" and torch.cuda.is_bf16_supported())
        dtype = torch.bfloat16 if use_bf16 else torch.float16
        scaler = None if use_bf16 else torch.amp.GradScaler("cuda")
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler

    def _diverged_message(self, value: float, epoch: int, step: int, last_good: int, checkpoints: Path | None) -> str:
        where = (f"the last good checkpoint (epoch {last_good}) is kept in {checkpoints / 'last.pt'}"
                 if checkpoints is not None and (checkpoints / "last.pt").is_file()
                 else "set train.checkpoint_dir to keep checkpoints")
        return (f"{self.name}: training loss became {value} at epoch {epoch}, step {step}; training stopped and "
                f"{where}. Lower train.lr, keep train.grad_clip > 0, or turn off train.amp")

    def _save(self, folder: Path, network, optimizer, scheduler, scaler, result: TrainResult, epoch: int,
              bad_rounds: int, best_state, finished: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if best_state is not None:
            _atomic_save({"version": CHECKPOINT_VERSION, "network": best_state, "epoch": epoch,
                          "metric": result.best_metric}, folder / "best.pt")
        _atomic_save({
            "version": CHECKPOINT_VERSION, "epoch": epoch, "network": network.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng": _rng_state(),
            "history": [asdict(r) for r in result.history], "best_epoch": result.best_epoch,
            "best_metric": result.best_metric, "seconds_to_best": result.seconds_to_best, "steps": result.steps,
            "bad_rounds": bad_rounds, "elapsed": result.history[-1].elapsed, "finished": finished,
            "stopped": result.stopped, "config": asdict(self.config),
        }, folder / "last.pt")


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


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by the trainer (tensors and plain values only)."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
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


def _tensorboard(folder: str | None):
    if not folder:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("train.tensorboard_dir is set but the tensorboard package is not installed; "
                      "no TensorBoard logs are written (pip install tensorboard)", stacklevel=3)
        return None
    return SummaryWriter(folder)


class _thread_setting:
    """Set ``torch.set_num_threads`` for the duration of a fit; 0 leaves it alone."""

    def __init__(self, threads: int):
        self.previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def close(self) -> None:
        torch.set_num_threads(self.previous)
