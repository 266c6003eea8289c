"""Training of neural models: one generic :class:`Trainer`, its config, the batch
sampler and data-parallel helpers. Models subclass
:class:`recloop.models.neural.NeuralRecommender`, which wires them to the trainer."""

from recloop.train.config import TrainerConfig
from recloop.train.distributed import DistributedContext
from recloop.train.sampler import epoch_batches
from recloop.train.trainer import EpochRecord, TrainData, Trainer, TrainResult, load_checkpoint

__all__ = ["DistributedContext", "EpochRecord", "TrainData", "TrainResult", "Trainer", "TrainerConfig",
           "epoch_batches", "load_checkpoint"]
