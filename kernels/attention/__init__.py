"""Additive (Bahdanau) attention, one decoder step: scores, softmax weights and context."""
