"""Training of neural models: one generic :class:`Trainer`, its config, the callbacks
on its hooks (early stopping, checkpoints, time budget, TensorBoard, progress, reports
to a tuner), the batch
sampler and data-parallel helpers. Models subclass
:class:`recloop.models.neural.NeuralRecommender`, which wires them to the trainer."""

from recloop.train.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    FitState,
    Progress,
    ReportValidation,
    TensorBoard,
    TimeBudget,
    load_checkpoint,
)
from recloop.train.config import TrainerConfig
from recloop.train.distributed import DistributedContext
from recloop.train.result import EpochRecord, TrainResult
from recloop.train.sampler import epoch_batches
from recloop.train.trainer import TrainData, Trainer

__all__ = ["Callback", "Checkpoint", "DistributedContext", "EarlyStopping", "EpochRecord", "FitState", "Progress",
           "ReportValidation", "TensorBoard", "TimeBudget", "TrainData", "TrainResult", "Trainer", "TrainerConfig", "epoch_batches",
           "load_checkpoint"]
