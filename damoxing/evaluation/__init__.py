"""Evaluation: streaming metrics (classification, regression, language models, BLEU) and reports."""

from .metrics import ClassificationMetrics, ImageClassificationMetrics, LanguageModelMetrics, RegressionMetrics, bleu
from .report import write_report

__all__ = [
    "ClassificationMetrics",
    "ImageClassificationMetrics",
    "LanguageModelMetrics",
    "RegressionMetrics",
    "bleu",
    "write_report",
]
