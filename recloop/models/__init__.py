"""Recommenders behind one interface, and the registry that names them."""

from __future__ import annotations

from recloop.errors import ConfigError, closest
from recloop.models.als import ALS
from recloop.models.base import UNKNOWN_USER, Recommender
from recloop.models.bias import Bias
from recloop.models.bpr import BPR
from recloop.models.content import ContentBased
from recloop.models.ease import EASE
from recloop.models.genre_popularity import GenrePopularity
from recloop.models.gru4rec import GRU4Rec
from recloop.models.itemknn import ItemKNN
from recloop.models.lightgcn import LightGCN, SocialLightGCN
from recloop.models.mlp import MLPRecommender
from recloop.models.neumf import NeuMF
from recloop.models.neural import NeuralRecommender
from recloop.models.popularity import MostPopular
from recloop.models.random import RandomRanker
from recloop.models.sasrec import SASRec
from recloop.models.two_tower import TwoTower

#: Every model by the name configs use. Add new models here.
MODELS: dict[str, type[Recommender]] = {
    # classic baselines
    MostPopular.name: MostPopular,
    RandomRanker.name: RandomRanker,
    GenrePopularity.name: GenrePopularity,
    Bias.name: Bias,
    ItemKNN.name: ItemKNN,
    EASE.name: EASE,
    ALS.name: ALS,
    BPR.name: BPR,
    # neural
    MLPRecommender.name: MLPRecommender,
    NeuMF.name: NeuMF,
    TwoTower.name: TwoTower,
    GRU4Rec.name: GRU4Rec,
    SASRec.name: SASRec,
    # graph
    LightGCN.name: LightGCN,
    SocialLightGCN.name: SocialLightGCN,
    # language-model content
    ContentBased.name: ContentBased,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{closest(name, MODELS)}; models are {sorted(MODELS)}") from None


__all__ = ["ALS", "BPR", "Bias", "ContentBased", "EASE", "GRU4Rec", "GenrePopularity", "ItemKNN", "LightGCN",
           "MLPRecommender", "MODELS", "MostPopular", "NeuMF", "NeuralRecommender", "RandomRanker", "Recommender",
           "SASRec", "SocialLightGCN", "TwoTower", "UNKNOWN_USER", "get_model_class"]
