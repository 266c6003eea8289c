"""Interaction data: vocabularies, logs, features, loaders, preprocessing and splits."""

from recloop.data.dataset import Dataset
from recloop.data.features import CategoricalFeature, Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions, UserHistories
from recloop.data.loading import load_dataset
from recloop.data.preprocess import PreprocessConfig, deduplicate, k_core, preprocess, threshold
from recloop.data.social import UserGraph
from recloop.data.splits import Split, SplitConfig, leave_one_out, ratio_split, split, temporal_split
from recloop.data.synthetic import SyntheticConfig, generate
from recloop.data.tabular import ColumnMapping

__all__ = [
    "CategoricalFeature", "ColumnMapping", "Dataset", "Features", "IdMap", "Interactions", "PreprocessConfig",
    "Split", "SplitConfig", "SyntheticConfig", "UserGraph", "UserHistories", "deduplicate", "generate", "k_core",
    "leave_one_out", "load_dataset", "preprocess", "ratio_split", "split", "temporal_split", "threshold",
]
