"""Recommenders behind one interface, and the registry that names them."""

from __future__ import annotations

from recloop.errors import ConfigError, closest
from recloop.models.base import UNKNOWN_USER, Recommender
from recloop.models.content import ContentBased
from recloop.models.ease import EASE
from recloop.models.genre_popularity import GenrePopularity
from recloop.models.gru4rec import GRU4Rec
from recloop.models.mlp import MLPRecommender
from recloop.models.neumf import NeuMF
from recloop.models.neural import NeuralRecommender
from recloop.models.popularity import MostPopular
from recloop.models.random import RandomRanker
from recloop.models.sasrec import SASRec
from recloop.models.two_tower import TwoTower

#: Every model by the name configs use. Add new models here.
MODELS: dict[str, type[Recommender]] = {
    MostPopular.name: MostPopular,
    EASE.name: EASE,
    SASRec.name: SASRec,
    GRU4Rec.name: GRU4Rec,
    ContentBased.name: ContentBased,
    GenrePopularity.name: GenrePopularity,
    RandomRanker.name: RandomRanker,
    NeuMF.name: NeuMF,
    MLPRecommender.name: MLPRecommender,
    TwoTower.name: TwoTower,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{closest(name, MODELS)}; models are {sorted(MODELS)}") from None


__all__ = ["ContentBased", "EASE", "GRU4Rec", "GenrePopularity", "MLPRecommender", "MODELS", "MostPopular", "NeuMF",
           "NeuralRecommender", "RandomRanker", "Recommender", "SASRec", "TwoTower", "UNKNOWN_USER", "get_model_class"]
