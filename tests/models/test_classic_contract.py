"""The shared model contract, for the classic baselines."""

from recloop.models import ALS, BPR, EASE, ItemKNN
from tests.models.contract import RecommenderContract


class TestEASEContract(RecommenderContract):
    def make_model(self, seed):
        return EASE(l2=20.0)


class TestItemKNNContract(RecommenderContract):
    def make_model(self, seed):
        return ItemKNN(k=30, shrink=5.0)


class TestALSContract(RecommenderContract):
    def make_model(self, seed):
        return ALS(factors=16, alpha=10.0, regularization=5.0, iterations=8, seed=seed)


class TestBPRContract(RecommenderContract):
    def make_model(self, seed):
        return BPR(factors=16, epochs=40, lr=0.02, batch_size=512, seed=seed)
