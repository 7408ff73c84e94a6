"""Optimizers for Prompt Tuning."""

from keras_prompt.optimizers.adafactor import Adafactor

__all__ = ["Adafactor"]
