"""The base of recloop's neural models: a ``Recommender`` trained by the one ``Trainer``.

A neural model is four short methods on top of :class:`NeuralRecommender`::

    @dataclass(frozen=True)
    class MyConfig:
        hidden: int = 64
        train: TrainerConfig = TrainerConfig(epochs=20)   # [model.train] in TOML

    class MyModel(NeuralRecommender):
        name = "my-model"
        config_class = MyConfig

        def build_network(self) -> nn.Module: ...         # sizes from n_users / n_items
        def training_data(self, train) -> TrainData: ...   # examples -> batches of tensors
        def loss(self, batch) -> torch.Tensor: ...         # uses self.network_
        def score_batch(self, user_idx, history) -> torch.Tensor: ...  # (b, n_items)

The base fits (seeded network initialisation, then :class:`~recloop.train.Trainer` with
early stopping on the ``validate`` callback its caller passes: the experiment runner
builds it from the core evaluator, ranking all items of the validation log; this module
never imports the evaluator), scores under ``torch.no_grad`` in eval mode, and saves the
network's ``state_dict`` as plain arrays (``network.<name>``) in the artifact, so a
reloaded model scores bit-identically. Everything a network needs to be rebuilt must
follow from the config, ``n_users``/``n_items`` and the saved arrays.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.data.social import UserGraph
from recloop.errors import ConfigError
from recloop.models.base import Recommender
from recloop.train.config import TrainerConfig
from recloop.train.trainer import TrainData, Trainer, TrainResult
from recloop.utils import seed_everything

NETWORK_PREFIX = "network."


class NeuralRecommender(Recommender):
    """A recommender whose state is a ``torch.nn.Module`` trained by :class:`Trainer`.

    The config class must have a ``train: TrainerConfig`` field. After ``fit``:
    ``network_`` (the trained module, eval mode) and ``train_result_`` (the
    :class:`~recloop.train.TrainResult`: per-epoch loss, validation metric, timings).
    """

    uses_validation: ClassVar[bool] = True
    #: What one row of :meth:`training_data` is when training with DP-SGD
    #: (``train.privacy``), i.e. what the guarantee protects; ``None``: the model does
    #: not support DP-SGD (its loss is not a mean of per-row terms Opacus can separate).
    privacy_unit: ClassVar[str | None] = None

    def __init__(self, config: Any = None, **hyperparameters: Any):
        super().__init__(config, **hyperparameters)
        if not isinstance(getattr(self.config, "train", None), TrainerConfig):
            raise ConfigError(f"{type(self).__name__}: {self.config_class.__name__} needs a "
                              "'train: TrainerConfig' field")

    # --- what a model defines --------------------------------------------------------------------
    @abstractmethod
    def build_network(self) -> nn.Module:
        """A freshly initialised network for ``self.n_users`` users and ``self.n_items`` items."""

    @abstractmethod
    def training_data(self, train: Interactions) -> TrainData:
        """The training examples of ``train`` (see :class:`~recloop.train.TrainData`)."""

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """The scalar loss of one batch, computed with ``self.network_``."""

    @abstractmethod
    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        """``(len(user_idx), n_items)`` scores; called in eval mode with gradients off."""

    def prepare(self, train: Interactions) -> None:
        """Derive state from ``train`` before the network is built (e.g. item popularity
        for negative sampling). State that scoring needs must also be in ``_get_state``."""

    # --- fitting and scoring -----------------------------------------------------------------------
    def fit(self, train: Interactions, *, item_features: Features | None = None,
            user_features: Features | None = None, valid: Interactions | None = None,
            validate: Callable[[], float] | None = None, user_graph: UserGraph | None = None,
            callbacks: Sequence[Any] = ()) -> Self:
        """As :meth:`Recommender.fit`, with early stopping on ``validate``: a function
        returning the validation metric of the network as it is now (higher is better),
        called by the trainer every ``train.eval_every`` epochs. The caller builds it
        (:func:`recloop.evaluate.validation_metric`; ``recloop.experiment.fit`` does it
        for you). Without ``validate`` the network trains for ``train.epochs`` epochs.
        ``callbacks`` run on the trainer's hooks after its own."""
        if validate is None and valid is not None and len(valid):
            raise ConfigError(f"{type(self).__name__}.fit() got a validation log but no validate callback; pass "
                              "validate=recloop.evaluate.validation_metric(model, train, valid) or fit through "
                              "recloop.experiment.fit()")
        self._validate, self._callbacks = validate, tuple(callbacks)
        try:
            return super().fit(train, item_features=item_features, user_features=user_features, valid=valid,
                               user_graph=user_graph)
        finally:
            del self._validate, self._callbacks

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg: TrainerConfig = self.config.train
        if cfg.privacy.enabled:
            if self.privacy_unit is None:
                supported = sorted(m.name for m in _subclasses(NeuralRecommender) if m.privacy_unit)
                raise ConfigError(f"{type(self).__name__} does not support train.privacy (DP-SGD); models that do: "
                                  f"{supported}")
            if cfg.privacy.delta == 0:  # the conventional delta: 1 / the number of people protected
                cfg = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, delta=1.0 / self.n_users))
        seed_everything(cfg.seed)
        self.prepare(train)
        trainer = Trainer(cfg, name=self.name, privacy_unit=self.privacy_unit or "example")
        self.network_ = self.build_network().to(trainer.device)
        data = self.training_data(train)
        self.train_result_: TrainResult = trainer.fit(self.network_, self.loss, data, self._validate,
                                                       callbacks=self._callbacks)

    @property
    def private(self) -> bool:
        """Whether this model trains with DP-SGD (``train.privacy.enabled``)."""
        return bool(self.config.train.privacy.enabled)

    def refit_model(self) -> NeuralRecommender:
        """The same model, same seed, set to train without validation for the epoch
        count early stopping chose (the best epoch; all epochs when there was no
        validation)."""
        cfg: TrainerConfig = self.config.train
        result = getattr(self, "train_result_", None)
        epochs = result.best_epoch if result is not None and result.best_epoch >= 1 else cfg.epochs
        train = dataclasses.replace(cfg, epochs=epochs, checkpoint_dir=None, resume=False)
        return type(self)(dataclasses.replace(self.config, train=train))

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        with self.inference():
            return self.score_batch(user_idx, history).float()

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode without autograd. Switching modes walks every module, which costs
        more than a served request's forward pass, so it happens only when the network
        is in training mode (validation during fit); a loaded model stays in eval mode."""
        was_training = self.network_.training
        if was_training:
            self.network_.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            if was_training:
                self.network_.train()

    @property
    def device(self) -> torch.device:
        """Where the network lives (the training device after fit; CPU after load)."""
        return next(self.network_.parameters()).device

    # --- persistence ---------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {NETWORK_PREFIX + k: v.detach().to("cpu").numpy() for k, v in self.network_.state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.network_ = self.build_network()
        weights = {k[len(NETWORK_PREFIX):]: torch.from_numpy(np.array(v)) for k, v in state.items()
                   if k.startswith(NETWORK_PREFIX)}
        self.network_.load_state_dict(weights)
        self.network_.eval()


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
