"""Shared fixtures for the keras_convgru tests."""

import keras
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded NumPy generator, and seeded Keras weight initialization."""
    keras.utils.set_random_seed(1234)
    return np.random.default_rng(1234)


@pytest.fixture
def float32_policy():
    """Restores the global `float32` dtype policy after the test."""
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
