"""Recommenders behind one interface, and the registry that names them."""

from __future__ import annotations

from recloop.errors import ConfigError, closest
from recloop.models.als import ALS
from recloop.models.base import UNKNOWN_USER, Recommender
from recloop.models.bpr import BPR
from recloop.models.ease import EASE
from recloop.models.itemknn import ItemKNN
from recloop.models.popularity import MostPopular

#: Every model by the name configs use. Add new models here.
MODELS: dict[str, type[Recommender]] = {
    MostPopular.name: MostPopular,
    EASE.name: EASE,
    ItemKNN.name: ItemKNN,
    ALS.name: ALS,
    BPR.name: BPR,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{closest(name, MODELS)}; models are {sorted(MODELS)}") from None


__all__ = ["ALS", "BPR", "EASE", "ItemKNN", "MODELS", "MostPopular", "Recommender", "UNKNOWN_USER", "get_model_class"]
