"""Evaluation: pure metric functions, a batched full-ranking evaluator, statistics."""

from recloop.evaluate.evaluator import EvaluationConfig, EvaluationResult, Evaluator, validation_metric
from recloop.evaluate.stats import Interval, PairedTest, mean_confidence_interval, paired_test

__all__ = ["EvaluationConfig", "EvaluationResult", "Evaluator", "Interval", "PairedTest",
           "mean_confidence_interval", "paired_test", "validation_metric"]
