"""Evaluation: streaming metrics (classification, regression, language models, BLEU) and reports."""
from damoxing.evaluation.metrics import ClassificationMetrics, LanguageModelMetrics, RegressionMetrics, bleu
from damoxing.evaluation.report import write_report

__all__ = ["ClassificationMetrics", "LanguageModelMetrics", "RegressionMetrics", "bleu", "write_report"]
