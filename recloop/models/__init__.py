"""Recommenders behind one interface, and the registry that names them."""

from __future__ import annotations

from recloop.errors import ConfigError, closest
from recloop.models.base import UNKNOWN_USER, Recommender
from recloop.models.content import ContentBased
from recloop.models.ease import EASE
from recloop.models.genre_popularity import GenrePopularity
from recloop.models.popularity import MostPopular
from recloop.models.random import RandomRanker

#: Every model by the name configs use. Add new models here.
MODELS: dict[str, type[Recommender]] = {
    MostPopular.name: MostPopular,
    EASE.name: EASE,
    ContentBased.name: ContentBased,
    GenrePopularity.name: GenrePopularity,
    RandomRanker.name: RandomRanker,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{closest(name, MODELS)}; models are {sorted(MODELS)}") from None


__all__ = ["ContentBased", "EASE", "GenrePopularity", "MODELS", "MostPopular", "RandomRanker", "Recommender",
           "UNKNOWN_USER", "get_model_class"]
