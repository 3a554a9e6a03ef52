"""Models built on minirad.nn: the seed's CNN classifier (the report generator follows)."""

from minirad.models.classifier import CNNClassifier

__all__ = ["CNNClassifier"]
