"""recloop: the whole recommender loop, from logs to live recommendations."""

__version__ = "0.1.0"
