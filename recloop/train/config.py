"""Hyperparameters of the training loop, shared by every neural model.

A model's config nests one of these as ``train``, so an experiment file sets them under
``[model.train]``::

    [model]
    name = "sasrec"
    hidden = 64
    [model.train]
    epochs = 200
    lr = 1e-3
    patience = 10
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recloop.errors import ConfigError, closest
from recloop.train.privacy import PrivacyConfig

SCHEDULES = ("constant", "linear", "cosine")
AMP_DTYPES = ("auto", "bf16", "fp16")
# The accuracy metrics of recloop.evaluate.metrics (not imported: the evaluator imports the
# model registry, which imports this module); a test keeps the two in step.
METRIC_NAMES = ("hr", "recall", "precision", "ndcg", "mrr", "map")


@dataclass(frozen=True)
class TrainerConfig:
    """How to train.

    Attributes
    ----------
    epochs:
        Maximum passes over the training examples.
    batch_size:
        Examples per optimiser step, summed over all processes when distributed (each of
        ``N`` processes takes ``batch_size / N``), so one config means the same
        optimisation on 1 or N processes.
    lr, weight_decay:
        AdamW learning rate and decoupled weight decay (applied to matrices and
        embeddings, not to biases and norms, as in nanoGPT).
    warmup_steps, warmup_ratio:
        Linear warm-up from 0 over ``warmup_steps`` steps, or over ``warmup_ratio`` of
        all steps when ``warmup_steps`` is 0.
    schedule:
        Learning-rate decay after warm-up over all ``epochs``: ``constant``, ``linear``
        (to 0) or ``cosine`` (to 0).
    grad_clip:
        Clip the global gradient norm to this value; 0 disables clipping.
    patience:
        Stop after this many validations without improvement of ``metric``; 0 never stops
        early. Needs validation data.
    eval_every:
        Validate every this many epochs (and after the last one).
    metric:
        Validation metric, computed by the core :class:`~recloop.evaluate.Evaluator` with
        full ranking; defaults to ``EvaluationConfig.select_by`` (``ndcg@10``).
    max_minutes:
        Wall-clock budget: stop (keeping the best epoch) at the first epoch end after this
        many minutes; 0 means no budget.
    device:
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    amp, amp_dtype:
        Mixed precision, on CUDA only (ignored on CPU): autocast to bf16 where the GPU
        supports it (``auto``) else fp16 with a gradient scaler.
    num_threads:
        ``torch.set_num_threads`` during training on CPU; 0 leaves PyTorch's default.
    seed:
        Seeds weight initialisation, shuffling and dropout: same seed, same model.
    checkpoint_dir, resume:
        Where to write ``last.pt`` (everything needed to resume) after every validation
        and ``best.pt`` (the best weights); with ``resume``, training continues from
        ``last.pt`` when it exists.
    progress:
        Show a progress bar with the loss and the validation metric.
    tensorboard_dir:
        Write TensorBoard scalars here, when the ``tensorboard`` package is installed.
    privacy:
        DP-SGD through Opacus (``[model.train.privacy]``, off by default): see
        :mod:`recloop.train.privacy`.
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    schedule: str = "constant"
    grad_clip: float = 1.0
    patience: int = 10
    eval_every: int = 1
    metric: str = "ndcg@10"
    max_minutes: float = 0.0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"
    num_threads: int = 0
    seed: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True
    tensorboard_dir: str | None = None
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_every": self.eval_every}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        non_negative = {"weight_decay": self.weight_decay, "warmup_steps": self.warmup_steps,
                        "grad_clip": self.grad_clip, "patience": self.patience, "max_minutes": self.max_minutes,
                        "num_threads": self.num_threads}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"train.{name} must be 0 or more, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}"
                              f"{closest(self.schedule, SCHEDULES)}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"train.amp_dtype must be one of {AMP_DTYPES}, got {self.amp_dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        name, _, cutoff = self.metric.partition("@")
        if name not in METRIC_NAMES or not cutoff.isdigit() or int(cutoff) < 1:
            raise ConfigError(f"train.metric must look like 'ndcg@10' with a metric among {METRIC_NAMES}, "
                              f"got {self.metric!r}{closest(name, METRIC_NAMES)}")
        if self.privacy.enabled and self.resume:
            raise ConfigError("train.resume cannot continue a DP-SGD fit (the privacy accountant's state is not "
                              "checkpointed): train from the start")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("train.resume needs train.checkpoint_dir (the folder holding last.pt)")
