"""The shared model contract for the reference rankers and the content model, and a
check that every registered model has a contract class."""

import importlib
import inspect
import re
from pathlib import Path

from recloop.models import MODELS, Bias, ContentBased, GenrePopularity, MostPopular, RandomRanker
from tests.models.contract import RecommenderContract


class TestMostPopularContract(RecommenderContract):
    learns_pattern = False

    def make_model(self, seed):
        return MostPopular()


class TestRandomContract(RecommenderContract):
    learns_pattern = False

    def make_model(self, seed):
        return RandomRanker(seed=seed)


class TestGenrePopularityContract(RecommenderContract):
    learns_pattern = False

    def make_model(self, seed):
        return GenrePopularity(affinity=1.0)


class TestBiasContract(RecommenderContract):
    learns_pattern = False

    def make_model(self, seed):
        return Bias()


class TestContentContract(RecommenderContract):
    min_ndcg = 0.05
    margin = 0.0  # text-only: the planted pattern is in the interactions, not in the item text

    def make_model(self, seed):
        return ContentBased(device="cpu")


def test_every_registered_model_passes_the_contract():
    """Each registered model class is built by some contract class's ``make_model`` (read
    from its source: some need fixtures, e.g. a text cache, to be built)."""
    for module in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(f"tests.models.{module.stem}")
    covered = set()
    pending = list(RecommenderContract.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        source = inspect.getsource(cls.make_model)
        covered |= {name for name, model in MODELS.items() if re.search(rf"\b{model.__name__}\(", source)}
    assert covered == set(MODELS), f"no contract class for {sorted(set(MODELS) - covered)}"
